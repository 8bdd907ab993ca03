package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// retryConditions are the retry_on values Envoy (and, for the gRPC status
// ones, proxyless gRPC) understands.
var retryConditions = map[string]bool{
	"5xx": true, "gateway-error": true, "reset": true, "connect-failure": true, "envoy-ratelimited": true,
	"retriable-4xx": true, "refused-stream": true, "retriable-status-codes": true, "retriable-headers": true,
	"http3-post-connect-failure": true,
	"cancelled":                  true, "deadline-exceeded": true, "internal": true, "resource-exhausted": true, "unavailable": true,
}

// maxRetries bounds retry attempts: more multiplies load during an outage.
const maxRetries = 10

// route checks r. The route's own checks (v.local) read no field that
// defaultRouteRefs fills, except where noted; those that do, or that look at
// other documents, run as v.cross.
func (v *validator) route(r *Route) {
	sp := &r.Spec
	if v.cross && sp.Service != "" && v.lookup(sp.Service) == nil {
		v.bad("spec.service", "unknown Service %q%s", sp.Service, v.suggestService(sp.Service))
	}
	if v.local {
		// Match.Protocol is defaulted only for model matches, which the
		// checks of protocol leave alone.
		v.match(&sp.Match)
		if !validName(sp.Target) {
			v.bad("spec.target", "target %q must be a DNS label", sp.Target)
		}
	}
	rules := map[string]bool{}
	for i, rule := range sp.Rules {
		f := elem("spec.rules", i)
		if v.local {
			switch {
			case !validName(rule.Name):
				v.badAt(f.dot("name"), "rule name %q must be a DNS label", rule.Name)
			case rule.Name == "rest":
				v.badAt(f.dot("name"), "rule name \"rest\" is reserved: the route's REST form is named <route>.rest")
			case rules[rule.Name]:
				v.badAt(f.dot("name"), "rule %q given twice", rule.Name)
			}
			rules[rule.Name] = true
			if len(rule.Headers) == 0 {
				v.badAt(f.dot("headers"), "a rule needs at least one header match")
			}
			v.headers(f.dot("headers"), rule.Headers)
			if len(rule.Split) == 0 {
				v.badAt(f.dot("split"), "a rule needs a split")
			}
		}
		if v.cross {
			v.split(f.dot("split"), rule.Split)
		}
	}
	if v.cross {
		// A route's split may be its service's only version (defaulted).
		if len(sp.Split) == 0 && sp.Ensemble == nil {
			v.bad("spec.split", "no destination: give a split, an ensemble, or a service with one version")
		}
		v.split(pathOf("spec.split"), sp.Split)
	}
	if sh := sp.Shadow; sh != nil {
		if v.cross {
			v.serviceRef(pathOf("spec.shadow"), sh.Service, sh.Version)
		}
		if v.local {
			if !(sh.Percentage > 0 && sh.Percentage <= 100) {
				v.bad("spec.shadow.percentage", "%v is outside (0, 100]", sh.Percentage)
			}
			if sh.Model != "" && !sh.Compare {
				v.bad("spec.shadow.model", "model is only used with compare: true")
			}
		}
	}
	if e := sp.Ensemble; e != nil {
		v.ensemble(e, sp.Match.Model)
	}
	if sp.Rollout != nil {
		v.rollout(sp)
	}
	if !v.local {
		return
	}
	if s := sp.SLO; s != nil {
		v.slo(s)
	}
	if rt := sp.Retries; rt != nil {
		if rt.Attempts > maxRetries {
			v.bad("spec.retries.attempts", "%d retries is above %d", rt.Attempts, maxRetries)
		}
		for i, on := range rt.On {
			if !retryConditions[on] {
				v.badAt(elem("spec.retries.on", i), "unknown retry condition %q", on)
			}
		}
		if sp.Timeout > 0 && rt.PerTryTimeout > sp.Timeout {
			v.bad("spec.retries.perTryTimeout", "per-try timeout %v is longer than the route timeout %v", rt.PerTryTimeout, sp.Timeout)
		}
	}
	if f := sp.Fault; f != nil {
		v.fault(f)
	}
}

func (v *validator) match(m *RouteMatch) {
	set := 0
	for _, s := range []string{m.Model, m.PathPrefix, m.Path} {
		if s != "" {
			set++
		}
	}
	if set > 1 {
		v.bad("spec.match", "give at most one of model, pathPrefix and path")
	}
	if m.Model != "" && strings.ContainsAny(m.Model, "/ ") {
		v.bad("spec.match.model", "model name %q must not contain '/' or spaces", m.Model)
	}
	if m.Protocol != "" && m.Model == "" {
		v.bad("spec.match.protocol", "protocol is only for model matches")
	}
	if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
		v.bad("spec.match.pathPrefix", "%q must start with /", m.PathPrefix)
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		v.bad("spec.match.path", "%q must start with /", m.Path)
	}
	v.headers(pathOf("spec.match.headers"), m.Headers)
}

func (v *validator) headers(field fieldPath, hs []HeaderMatch) {
	for i, h := range hs {
		f := field.at(i)
		if !headerNameRE.MatchString(h.Name) {
			v.badAt(f.dot("name"), "%q is not a lower-case header name", h.Name)
		}
		n := 0
		for _, set := range []bool{h.Exact != "", h.Prefix != "", h.Regex != "", h.Present} {
			if set {
				n++
			}
		}
		if n != 1 {
			v.badAt(f, "give exactly one of exact, prefix, regex and present")
		}
		if h.Regex != "" {
			if _, err := regexp.Compile(h.Regex); err != nil {
				v.badAt(f.dot("regex"), "invalid RE2 regular expression: %v", err)
			}
		}
	}
}

func (v *validator) split(field fieldPath, split []Destination) {
	var total uint64
	var seen map[string]int
	if len(split) > scanUpTo {
		seen = make(map[string]int, len(split))
	}
	for i, d := range split {
		f := field.at(i)
		v.serviceRef(f, d.Service, d.Version)
		if j := lastSame(split[:i], d, seen); j >= 0 {
			v.badAt(f, "%s version %s is also %s[%d]", d.Service, d.Version, field, j)
		}
		total += uint64(d.Weight)
	}
	if len(split) > 0 && total != 100 {
		v.badAt(field, "weights sum to %d, want 100", total)
	}
}

// scanUpTo is the longest split searched for duplicates by comparing each
// destination with those before it; longer ones use a map.
const scanUpTo = 16

// lastSame returns the index of the last destination of before with d's
// service and version, or -1. A split's destinations are told apart by
// "service/version", as the error message names them, so names containing
// '/' can collide exactly as those strings do. seen is nil for short splits;
// otherwise it indexes before and lastSame adds d.
func lastSame(before []Destination, d Destination, seen map[string]int) int {
	if seen != nil {
		key := d.Service + "/" + d.Version
		j, dup := seen[key]
		seen[key] = len(before)
		if !dup {
			return -1
		}
		return j
	}
	for j := len(before) - 1; j >= 0; j-- {
		if sameRef(before[j], d) {
			return j
		}
	}
	return -1
}

// sameRef reports whether a.Service+"/"+a.Version equals b's, without
// building the strings in the common case.
func sameRef(a, b Destination) bool {
	if a.Service == b.Service {
		return a.Version == b.Version
	}
	// Different services give the same key only when one holds a '/'.
	if !strings.Contains(a.Service, "/") && !strings.Contains(b.Service, "/") {
		return false
	}
	return a.Service+"/"+a.Version == b.Service+"/"+b.Version
}

func (v *validator) ensemble(e *Ensemble, model string) {
	if v.local && len(e.Members) < 2 {
		v.bad("spec.ensemble.members", "an ensemble needs at least 2 members, got %d", len(e.Members))
	}
	members := map[[3]string]int{}
	for i, m := range e.Members {
		f := elem("spec.ensemble.members", i)
		// Members' services and versions are defaulted from the route's
		// service: telling them apart is a cross-document check.
		if v.cross {
			v.serviceRef(f, m.Service, m.Version)
			key := [3]string{m.Service, m.Version, m.Model}
			if j, dup := members[key]; dup {
				v.badAt(f, "the same member as spec.ensemble.members[%d]", j)
			}
			members[key] = i
		}
		if !v.local {
			continue
		}
		if m.Model == "" {
			v.badAt(f.dot("model"), "model is required when the route does not match a model")
		}
		if m.Weight < 0 {
			v.badAt(f.dot("weight"), "weight %v is negative", m.Weight)
		}
	}
	if !v.local {
		return
	}
	if int(e.Quorum) > len(e.Members) {
		v.bad("spec.ensemble.quorum", "quorum %d is above the %d members", e.Quorum, len(e.Members))
	}
	if e.Mode == ModeSequence {
		if e.Strategy != "" || e.Stacking != nil {
			v.bad("spec.ensemble.strategy", "a sequence passes outputs on: strategy and stacking are for mode parallel")
		}
		if int(e.Quorum) != len(e.Members) {
			v.bad("spec.ensemble.quorum", "a sequence needs every member: quorum must equal the %d members", len(e.Members))
		}
	}
	switch {
	case e.Strategy == StrategyStacking && e.Stacking == nil:
		v.bad("spec.ensemble.stacking", "strategy stacking needs the stacking meta-model")
	case e.Strategy != StrategyStacking && e.Stacking != nil && e.Mode == ModeParallel:
		v.bad("spec.ensemble.stacking", "stacking is only for strategy stacking")
	case e.Stacking != nil && len(e.Stacking.Weights) != len(e.Members):
		v.bad("spec.ensemble.stacking.weights", "%d weights for %d members", len(e.Stacking.Weights), len(e.Members))
	}
	v.adaptive(e)
}

func (v *validator) slo(s *SLO) {
	if s.Availability == 0 && s.ErrorRate == 0 && len(s.Latency) == 0 {
		v.bad("spec.slo", "give at least one of availability, errorRate and latency")
	}
	if s.Availability != 0 && !(s.Availability > 0 && s.Availability < 100) {
		v.bad("spec.slo.availability", "%v is outside (0, 100): a percentage such as 99.9", s.Availability)
	}
	if s.ErrorRate != 0 && !(s.ErrorRate > 0 && s.ErrorRate < 100) {
		v.bad("spec.slo.errorRate", "%v is outside (0, 100): a percentage such as 1", s.ErrorRate)
	}
	seen := map[float64]bool{}
	for i, l := range s.Latency {
		f := elem("spec.slo.latency", i)
		if !(l.Percentile > 0 && l.Percentile < 100) {
			v.badAt(f.dot("percentile"), "%v is outside (0, 100)", l.Percentile)
		} else if seen[l.Percentile] {
			v.badAt(f.dot("percentile"), "percentile %v given twice", l.Percentile)
		}
		seen[l.Percentile] = true
		if l.Threshold <= 0 {
			v.badAt(f.dot("threshold"), "a positive threshold such as 250ms is required")
		}
	}
	if s.Window.D().Hours() < 24 {
		v.bad("spec.slo.window", "window %v is shorter than 1d", s.Window)
	}
	for i, w := range s.BurnWindows {
		f := elem("spec.slo.burnWindows", i)
		if w.Window <= 0 || w.Window > s.Window {
			v.badAt(f.dot("window"), "window %v must be positive and within the budget window %v", w.Window, s.Window)
		}
		if w.BurnRate <= 0 {
			v.badAt(f.dot("burnRate"), "burn rate %v must be positive", w.BurnRate)
		}
	}
}

func (v *validator) fault(f *FaultInjection) {
	if f.Delay == nil && f.Abort == nil {
		v.bad("spec.fault", "give delay, abort or both")
	}
	if d := f.Delay; d != nil {
		v.percent("spec.fault.delay.percentage", d.Percentage)
		if d.Duration <= 0 {
			v.bad("spec.fault.delay.duration", "a positive duration is required")
		}
	}
	if a := f.Abort; a != nil {
		v.percent("spec.fault.abort.percentage", a.Percentage)
		switch {
		case (a.HTTPStatus == 0) == (a.GRPCStatus == 0):
			v.bad("spec.fault.abort", "give exactly one of httpStatus and grpcStatus")
		case a.HTTPStatus != 0 && (a.HTTPStatus < 200 || a.HTTPStatus > 599):
			v.bad("spec.fault.abort.httpStatus", "%d is outside 200..599", a.HTTPStatus)
		case a.GRPCStatus > 16:
			v.bad("spec.fault.abort.grpcStatus", "%d is outside 1..16", a.GRPCStatus)
		}
	}
}

func (v *validator) port(field string, p uint32) {
	if p == 0 || p > 65535 {
		v.bad(field, "port %d is outside 1..65535", p)
	}
}

func (v *validator) routeList(field fieldPath, names []string) {
	if slices.IsSorted(names) {
		v.sortedRouteList(field, names)
		return
	}
	// Sized up front: a gateway may list every route of the mesh.
	seen := make(map[string]bool, len(names))
	for i, n := range names {
		f := field.at(i)
		if v.m.Route(n) == nil {
			v.badAt(f, "unknown Route %q%s", n, v.suggestRoute(n))
		} else if seen[n] {
			v.badAt(f, "Route %q listed twice", n)
		}
		seen[n] = true
	}
}

// sortedRouteList is routeList for names in order, as a gateway listing
// every route of a large mesh has them: it walks them beside the sorted
// routes, and a repeated name is next to its first.
func (v *validator) sortedRouteList(field fieldPath, names []string) {
	rs := v.m.Routes
	j := 0
	for i, n := range names {
		for j < len(rs) && rs[j].Metadata.Name < n {
			j++
		}
		if j == len(rs) || rs[j].Metadata.Name != n {
			v.badAt(field.at(i), "unknown Route %q%s", n, v.suggestRoute(n))
		} else if i > 0 && names[i-1] == n {
			v.badAt(field.at(i), "Route %q listed twice", n)
		}
	}
}

func (v *validator) gateway(g *Gateway, before []*Gateway) {
	sp := &g.Spec
	if v.local {
		v.port("spec.port", sp.Port)
		if len(sp.Routes) == 0 {
			v.bad("spec.routes", "a gateway needs at least one route")
		}
	}
	if v.cross {
		v.routeList(pathOf("spec.routes"), sp.Routes)
	}
	if v.local {
		hosts := map[string]bool{}
		for i, h := range sp.Hosts {
			if h == "" || strings.ContainsAny(h, " /") {
				v.badAt(elem("spec.hosts", i), "host %q must be a host name, host:port or *", h)
			} else if hosts[h] {
				v.badAt(elem("spec.hosts", i), "host %q listed twice", h)
			}
			hosts[h] = true
		}
		v.dnsLabel("spec.identity.namespace", sp.Identity.Namespace)
		v.dnsLabel("spec.identity.serviceAccount", sp.Identity.ServiceAccount)
	}
	if !v.cross {
		return
	}
	for _, o := range before {
		if o.Spec.Nodes.Service == sp.Nodes.Service && len(o.Spec.Nodes.IDs) == 0 && len(sp.Nodes.IDs) == 0 {
			v.bad("spec.nodes", "Gateway %q (%s) selects the same nodes (service %q): give each gateway its own nodes.service or ids",
				o.Metadata.Name, o.Source, sp.Nodes.Service)
		}
	}
}

func (v *validator) sidecar(s *Sidecar, before []*Sidecar) {
	sp := &s.Spec
	if v.lookup(sp.Service) == nil {
		v.bad("spec.service", "unknown Service %q%s", sp.Service, v.suggestService(sp.Service))
	}
	for _, o := range before {
		if o.Spec.Service == sp.Service {
			v.bad("spec.service", "Sidecar %q (%s) is already the sidecar of Service %q", o.Metadata.Name, o.Source, sp.Service)
		}
	}
	if sp.Mode == SidecarProxyless {
		v.proxylessSidecar(sp)
		return
	}
	v.port("spec.inbound.port", sp.Inbound.Port)
	v.port("spec.inbound.appPort", sp.Inbound.AppPort)
	if sp.Inbound.AppPort == sp.Inbound.Port {
		v.bad("spec.inbound.appPort", "the application port %d is the inbound listener's", sp.Inbound.AppPort)
	}
	if out := sp.Outbound; out != nil {
		v.port("spec.outbound.port", out.Port)
		if out.Port == sp.Inbound.Port {
			v.bad("spec.outbound.port", "port %d is also the inbound port", out.Port)
		}
		if len(out.Routes) == 0 {
			v.bad("spec.outbound.routes", "outbound needs at least one route")
		}
		v.routeList(pathOf("spec.outbound.routes"), out.Routes)
	}
}

// proxylessSidecar checks a sidecar whose instances are xDS gRPC servers.
func (v *validator) proxylessSidecar(sp *SidecarSpec) {
	if s := v.lookup(sp.Service); s != nil && s.Spec.Protocol != ProtocolGRPC {
		v.bad("spec.mode", "mode proxyless is for grpc services: Service %q speaks %s", sp.Service, s.Spec.Protocol)
	}
	if sp.Inbound.Port > 65535 {
		v.port("spec.inbound.port", sp.Inbound.Port) // 0: a client only
	}
	if sp.Inbound.AppPort != 0 {
		v.bad("spec.inbound.appPort", "appPort is for mode envoy: a proxyless gRPC server serves on inbound.port itself")
	}
	if sp.Outbound != nil {
		v.bad("spec.outbound", "outbound is for mode envoy: proxyless clients get their routes as xds:/// targets")
	}
}

func (v *validator) authorization(a *AuthorizationPolicy, before []*AuthorizationPolicy) {
	sp := &a.Spec
	if v.lookup(sp.Service) == nil {
		v.bad("spec.service", "unknown Service %q%s", sp.Service, v.suggestService(sp.Service))
	} else if !v.hasSidecar(sp.Service) {
		v.bad("spec.service", "Service %q has no Sidecar to enforce the policy", sp.Service)
	}
	for _, o := range before {
		if o.Spec.Service == sp.Service && o.Spec.Action != sp.Action {
			v.bad("spec.action", "Service %q already has %s policy %q (%s); one service takes one action", sp.Service, o.Spec.Action, o.Metadata.Name, o.Source)
		}
	}
	names := map[string]bool{}
	for i, r := range sp.Rules {
		f := elem("spec.rules", i)
		if !validName(r.Name) {
			v.badAt(f.dot("name"), "rule name %q must be a DNS label", r.Name)
		} else if names[r.Name] {
			v.badAt(f.dot("name"), "rule %q given twice", r.Name)
		}
		names[r.Name] = true
		for j, id := range r.From.Identities {
			if id != "*" && !strings.HasPrefix(id, "spiffe://") {
				v.bad(fmt.Sprintf("%s.from.identities[%d]", f, j), "%q is not a SPIFFE ID (spiffe://...) or *", id)
			}
		}
		for j, ns := range r.From.Namespaces {
			fj := fmt.Sprintf("%s.from.namespaces[%d]", f, j)
			if !validName(ns) {
				v.dnsLabel(fj, ns)
			} else if !v.namespaceHasIdentities(ns) {
				// Principals are exact SPIFFE IDs resolved from the policy;
				// an empty set would match every caller.
				v.bad(fj, "namespace %q has no Service or Gateway identities", ns)
			}
		}
		for j, s := range r.From.Services {
			if v.lookup(s) == nil {
				v.bad(fmt.Sprintf("%s.from.services[%d]", f, j), "unknown Service %q%s", s, v.suggestService(s))
			}
		}
		for j, g := range r.From.Gateways {
			if v.m.Gateway(g) == nil {
				v.bad(fmt.Sprintf("%s.from.gateways[%d]", f, j), "unknown Gateway %q%s", g, v.suggestGateway(g))
			}
		}
		models := map[string]bool{}
		for j, m := range r.To.Models {
			if m == "" || strings.ContainsAny(m, "/ ") {
				v.bad(fmt.Sprintf("%s.to.models[%d]", f, j), "model name %q must be non-empty, without '/' or spaces", m)
			} else if models[m] {
				v.bad(fmt.Sprintf("%s.to.models[%d]", f, j), "model %q listed twice", m)
			}
			models[m] = true
		}
		v.routeList(f.dot("to.routes"), r.To.Routes)
		for j, p := range r.To.Paths {
			if !strings.HasPrefix(p, "/") {
				v.bad(fmt.Sprintf("%s.to.paths[%d]", f, j), "%q must start with /", p)
			}
		}
		for j, p := range r.To.PathPrefixes {
			if !strings.HasPrefix(p, "/") {
				v.bad(fmt.Sprintf("%s.to.pathPrefixes[%d]", f, j), "%q must start with /", p)
			}
		}
	}
}

func (v *validator) namespaceHasIdentities(ns string) bool {
	for _, s := range v.m.Services {
		if s.Spec.Identity.Namespace == ns {
			return true
		}
	}
	for _, g := range v.m.Gateways {
		if g.Spec.Identity.Namespace == ns {
			return true
		}
	}
	return false
}

// hasSidecar reports whether service has something to enforce an
// authorization policy: an Envoy sidecar, or proxyless gRPC servers.
func (v *validator) hasSidecar(service string) bool {
	for _, s := range v.m.Sidecars {
		if s.Spec.Service == service && (s.Spec.Mode != SidecarProxyless || s.Spec.Inbound.Port != 0) {
			return true
		}
	}
	return false
}
