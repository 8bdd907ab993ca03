package model

import (
	"slices"
	"strings"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// The conversion of policy routes into IR routes, shared by every kind of
// listener that has routes.

// routeList converts the routes named names, in order, for caller c.
func (b *builder) routeList(c caller, names []string, envoy bool) []Route {
	// Most routes expand to a gRPC and a REST form.
	out := make([]Route, 0, 2*len(names))
	for _, name := range names {
		r, ri := b.route(name)
		out = b.expand(out, c, r, ri, envoy)
	}
	return out
}

// OIPModelMethodPrefix is the path prefix of the OIP gRPC methods that
// name one model (ModelInfer, ModelReady, ModelMetadata): a standard
// client calls ModelReady and ModelMetadata before ModelInfer, and all of
// them must reach the model's route. The prefix also takes Triton's
// per-model extensions (ModelStreamInfer, ModelConfig, ModelStatistics),
// which belong with the model too. A gRPC model route matches this prefix
// with GRPC set and the model header (exact) as its first header match;
// the xds package relies on that shape to tell the fanout filter which
// route selects which model.
const OIPModelMethodPrefix = "/inference.GRPCInferenceService/Model"

// form is one way a policy route matches: gRPC (per-model methods and model
// header) or REST (the model's path /v2/models/<model> as a separated
// prefix: metadata, ready, infer and versions/<v>/..., but not a model
// whose name merely starts with <model>), each its own IR route.
type form struct {
	suffix string
	match  RouteMatch
}

// forms returns the IR matches of a policy route, fs[:n], in an array
// rather than a slice of its own: a large mesh has tens of thousands of
// routes. For proxyless clients the target already names the route, so
// only its headers are matched.
func (b *builder) forms(m policy.RouteMatch, envoy bool) (fs [2]form, n int) {
	if !envoy {
		fs[0] = form{match: RouteMatch{Prefix: "/", Headers: b.headerMatches(nil, m.Headers)}}
		return fs, 1
	}
	switch {
	case m.Model != "":
		grpc := func() form {
			return form{match: RouteMatch{Prefix: OIPModelMethodPrefix, GRPC: true,
				Headers: b.headerMatches([]HeaderMatch{{Name: b.pm.Config.Spec.ModelHeader, Exact: m.Model}}, m.Headers)}}
		}
		rest := func(suffix string) form {
			return form{suffix: suffix, match: RouteMatch{SeparatedPrefix: b.str.concat("/v2/models/", m.Model), Headers: b.headerMatches(nil, m.Headers)}}
		}
		switch m.Protocol {
		case policy.MatchGRPC:
			fs[0] = grpc()
			return fs, 1
		case policy.MatchHTTP:
			fs[0] = rest("")
			return fs, 1
		}
		fs[0], fs[1] = grpc(), rest(".rest")
		return fs, 2
	case m.PathPrefix != "":
		fs[0] = form{match: RouteMatch{Prefix: m.PathPrefix, Headers: b.headerMatches(nil, m.Headers)}}
	case m.Path != "":
		fs[0] = form{match: RouteMatch{Path: m.Path, Headers: b.headerMatches(nil, m.Headers)}}
	default:
		fs[0] = form{match: RouteMatch{Prefix: "/", Headers: b.headerMatches(nil, m.Headers)}}
	}
	return fs, 1
}

// headerMatches returns first followed by the IR form of hs, in a new
// slice (nil if both are empty).
func (b *builder) headerMatches(first []HeaderMatch, hs []policy.HeaderMatch) []HeaderMatch {
	if len(first)+len(hs) == 0 {
		return nil
	}
	out := b.headers.take(len(first) + len(hs))
	n := copy(out, first)
	for i, h := range hs {
		out[n+i] = HeaderMatch{Name: h.Name, Exact: h.Exact, Prefix: h.Prefix, Regex: h.Regex, Present: h.Present, Invert: h.Invert}
	}
	return out
}

// expand turns a policy route into IR routes in match order: each rule
// (more specific) before the route's own split, each in every form. envoy
// is false for proxyless clients, which get no wasm filters or mirrors.
// The routes are appended to out, so a listener's list is built in place.
func (b *builder) expand(out []Route, c caller, r *policy.Route, ri *routeInfo, envoy bool) []Route {
	sp := &r.Spec
	base := b.action(c, sp, ri, envoy)
	if base.Fanout != nil && b.opts.Observer != nil && isAdaptive(sp.Ensemble) {
		b.observe(base.Fanout, r, c)
	}
	fs, n := b.forms(sp.Match, envoy)
	for fi, f := range fs[:n] {
		for _, rule := range sp.Rules {
			a := base
			a.Clusters = nil // replaced by the rule's split, no need to copy
			a = b.cloneAction(a)
			a.Clusters = b.weighted(c, rule.Split)
			m := f.match
			m.Headers = b.headerMatches(m.Headers, rule.Headers)
			out = append(out, Route{Name: b.str.concat(r.Metadata.Name, ".", rule.Name, f.suffix), Match: m, Action: a})
		}
		// Every other route has its own copy by now: the last may keep base.
		a := base
		if fi < n-1 {
			a = b.cloneAction(base)
		}
		out = append(out, Route{Name: b.str.concat(r.Metadata.Name, f.suffix), Match: f.match, Action: a})
	}
	return out
}

// cloneAction copies the slices and pointers of a so that Normalize of one
// route never reorders another's. Clusters already in Normalize's order
// are never written, so they stay shared.
func (b *builder) cloneAction(a RouteAction) RouteAction {
	if !slices.IsSortedFunc(a.Clusters, compareWeighted) {
		a.Clusters = b.weights.clone(a.Clusters)
	}
	a.Mirrors = slices.Clone(a.Mirrors)
	if a.Retry != nil {
		r := *a.Retry
		r.On = slices.Clone(r.On)
		a.Retry = &r
	}
	if a.Fanout != nil {
		f := *a.Fanout
		f.Members = slices.Clone(f.Members)
		a.Fanout = &f
	}
	if a.SLO != nil {
		s := *a.SLO
		s.Latency = slices.Clone(s.Latency)
		s.Windows = slices.Clone(s.Windows)
		a.SLO = &s
	}
	return a
}

// weighted converts split.
func (b *builder) weighted(c caller, split []policy.Destination) []WeightedCluster {
	out := b.weights.take(len(split))
	for i, d := range split {
		out[i] = WeightedCluster{Name: b.clusterFor(c, d.Service, d.Version), Weight: d.Weight}
	}
	return out
}

// routeSplit is weighted for the split of a route that resolved to ri: ri's
// own slice when c uses the plain clusters (secure keeps every name) and
// the slice may be shared.
func (b *builder) routeSplit(c caller, split []policy.Destination, ri *routeInfo) []WeightedCluster {
	if ri.shared && (!b.strict || c.identity == nil) {
		return ri.split
	}
	out := b.weights.take(len(split))
	for i, d := range split {
		out[i] = WeightedCluster{Name: b.secure(c, d.Service, d.Version, ri.split[i].Name), Weight: d.Weight}
	}
	return out
}

func compareWeighted(x, y WeightedCluster) int { return strings.Compare(x.Name, y.Name) }

// action converts the route's settings; ri, if not nil, is what the route
// resolved to.
func (b *builder) action(c caller, sp *policy.RouteSpec, ri *routeInfo, envoy bool) RouteAction {
	a := RouteAction{Timeout: sp.Timeout.D()}
	if ri != nil {
		a.Clusters = b.routeSplit(c, sp.Split, ri)
	} else {
		a.Clusters = b.weighted(c, sp.Split)
	}
	if e := sp.Ensemble; e != nil && len(a.Clusters) == 0 && len(e.Members) > 0 {
		// gRPC through Envoy: the request goes on to the first member and
		// the fanout filter rewrites the answer (DESIGN.md).
		a.Clusters = b.weights.take(1)
		a.Clusters[0] = WeightedCluster{Name: b.clusterFor(c, e.Members[0].Service, e.Members[0].Version), Weight: 100}
	}
	if rt := sp.Retries; rt != nil {
		a.Retry = &RetryPolicy{Attempts: rt.Attempts, PerTryTimeout: rt.PerTryTimeout.D(), On: slices.Clone(rt.On)}
	}
	if f := sp.Fault; f != nil {
		a.Fault = &Fault{}
		if d := f.Delay; d != nil {
			a.Fault.DelayPercent, a.Fault.Delay = d.Percentage, d.Duration.D()
		}
		if ab := f.Abort; ab != nil {
			a.Fault.AbortPercent, a.Fault.AbortHTTPStatus, a.Fault.AbortGRPCStatus = ab.Percentage, ab.HTTPStatus, ab.GRPCStatus
		}
	}
	if !envoy {
		return a
	}
	cluster := func(service, version string) string { return b.clusterFor(c, service, version) }
	a.Mirrors = MirrorsOf(sp.Shadow, cluster)
	a.Fanout = FanoutOf(sp.Ensemble, cluster)
	a.SLO = SLOOf(sp.SLO)
	return a
}
