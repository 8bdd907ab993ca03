package filterconfig

import (
	"fmt"
	"regexp"
	"strings"
)

// ModelRouting lets the fanout filter route standard OIP gRPC clients
// (Triton, KServe), which name their model only in the request message
// (model_name, field 1 of ModelInferRequest, ModelReadyRequest and
// ModelMetadataRequest) and never set the model header Envoy routes by.
//
// For such a request the filter holds the headers (which needs the Wasm
// config's allow_on_headers_stop_iteration: see docs/filters.md), reads
// model_name from the first message, sets Header to it, and lets the
// request go on: Envoy clears its route cache when a filter changes request
// headers, so the router picks the model's route. Envoy does not tell the
// filter which route that is until the router has run, so the filter finds
// it in Routes, the listener's gRPC model routes in match order, to apply
// that route's fan-out settings.
//
// Without ModelRouting (for example under Istio, whose WasmPlugin cannot
// set allow_on_headers_stop_iteration) the filter never holds a request
// for this, and clients must send the header themselves.
type ModelRouting struct {
	// Header is the request header the routes match the model by.
	Header string `json:"header"`
	// Routes are the listener's routes that select a model by Header, in
	// match order.
	Routes []ModelRoute `json:"routes"`
}

// ModelRoute is one Envoy route that selects a model: Header equal to
// Model, and every one of Headers.
type ModelRoute struct {
	// Route is the Envoy route name (the key of the route's settings).
	Route string `json:"route"`
	// Model is the value of the model header the route requires.
	Model string `json:"model"`
	// Headers are the route's other header matches, all required.
	Headers []HeaderMatch `json:"headers,omitempty"`
}

// HeaderMatch matches one request header as Envoy's HeaderMatcher does:
// exactly one of Exact, Prefix, Regex (RE2, the whole value) and Present.
type HeaderMatch struct {
	Name    string `json:"name"`
	Exact   string `json:"exact,omitempty"`
	Prefix  string `json:"prefix,omitempty"`
	Regex   string `json:"regex,omitempty"`
	Present bool   `json:"present,omitempty"`
	// Invert negates the match (an absent header then matches).
	Invert bool `json:"invert,omitempty"`

	re *regexp.Regexp // Regex, anchored; compiled by validate
}

// validate checks m, compiling its regular expressions.
func (m *ModelRouting) validate(where string) []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", where, field, fmt.Sprintf(format, args...)))
	}
	if m.Header == "" || m.Header != strings.ToLower(m.Header) {
		add("header", "a lower-case header name is required, got %q", m.Header)
	}
	for i := range m.Routes {
		r := &m.Routes[i]
		rw := fmt.Sprintf("routes[%d]", i)
		if r.Route == "" {
			add(rw+".route", "a route name is required")
		}
		if r.Model == "" {
			add(rw+".model", "a model name is required")
		}
		for j := range r.Headers {
			h := &r.Headers[j]
			hw := fmt.Sprintf("%s.headers[%d]", rw, j)
			kinds := 0
			for _, set := range []bool{h.Exact != "", h.Prefix != "", h.Regex != "", h.Present} {
				if set {
					kinds++
				}
			}
			if h.Name == "" || kinds != 1 {
				add(hw, "a name and exactly one of exact, prefix, regex and present are required")
			}
			if h.Regex != "" {
				re, err := regexp.Compile("^(?:" + h.Regex + ")$")
				if err != nil {
					add(hw+".regex", "%v", err)
					continue
				}
				h.re = re
			}
		}
	}
	return errs
}

// RouteFor returns the name of the first route that selects model for a
// request whose headers header looks up (the model header itself aside),
// or "" when none does. m must have passed validation (ParseFanout does
// it), which compiles the regular expressions.
func (m *ModelRouting) RouteFor(model string, header func(name string) (string, bool)) string {
	for i := range m.Routes {
		r := &m.Routes[i]
		if r.Model == model && r.matches(header) {
			return r.Route
		}
	}
	return ""
}

func (r *ModelRoute) matches(header func(name string) (string, bool)) bool {
	for i := range r.Headers {
		h := &r.Headers[i]
		v, present := header(h.Name)
		if h.match(v, present) == h.Invert {
			return false
		}
	}
	return true
}

// match is the match before Invert; an absent header matches only Present
// (and so, inverted, everything else).
func (h *HeaderMatch) match(v string, present bool) bool {
	switch {
	case !present:
		return false
	case h.Present:
		return true
	case h.Exact != "":
		return v == h.Exact
	case h.Prefix != "":
		return strings.HasPrefix(v, h.Prefix)
	case h.re != nil:
		return h.re.MatchString(v)
	}
	return false
}
