package model

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/maestro-ml/maestro/internal/parallel"
)

// ErrInvalid is wrapped by every error Validate reports.
var ErrInvalid = errors.New("invalid model")

// Validate checks the invariants the xds builders rely on: names present
// and unique, slices sorted, references resolved, one match kind per route,
// percentages in range. It reports every problem found, each naming the
// object by path (e.g. `group "gw" listener "in" route "r1": ...`). The
// policy layer validates user input; a Validate failure means a bug in the
// conversion, which is why it is checked before anything is served.
//
// A Mesh returned by Build was validated there and is not walked again.
func (m *Mesh) Validate() error {
	if m.validated {
		return nil
	}
	return m.validate(1)
}

// validate is Validate checking the groups on up to workers goroutines,
// each with a validator of its own; their errors are joined in group
// order, as one goroutine would report them.
func (m *Mesh) validate(workers int) error {
	v := &validator{m: m, clusters: newSortedIndex(m.Clusters, func(c *Cluster) string { return c.Name })}
	for i := range m.Clusters {
		c := &m.Clusters[i]
		if n := c.EndpointCount(); n > 1 && c.HasHostNames() {
			if v.manyDNS == nil {
				v.manyDNS = map[string]int{}
			}
			v.manyDNS[c.Name] = n
		}
	}
	v.names(sub(nil, "group", ""), len(m.Groups), func(i int) string { return m.Groups[i].Name })
	v.names(sub(nil, "cluster", ""), len(m.Clusters), func(i int) string { return m.Clusters[i].Name })
	v.names(sub(nil, "secret", ""), len(m.Secrets), func(i int) string { return m.Secrets[i].Name })
	if workers > 1 && len(m.Groups) > 1 {
		errs := make([][]error, len(m.Groups))
		_ = parallel.Each(context.Background(), len(m.Groups), workers, func(_ context.Context, i int) error {
			// A copy of the index: find moves its last-hit position.
			gv := &validator{m: m, clusters: v.clusters, manyDNS: v.manyDNS}
			gv.group(&m.Groups[i])
			errs[i] = gv.errs
			return nil
		})
		for _, e := range errs {
			v.errs = append(v.errs, e...)
		}
	} else {
		for i := range m.Groups {
			v.group(&m.Groups[i])
		}
	}
	for i := range m.Clusters {
		v.cluster(&m.Clusters[i])
	}
	for i := range m.Secrets {
		s := &m.Secrets[i]
		if (s.Certificate == nil) == (len(s.TrustBundle) == 0) {
			v.addf("secret %q: exactly one of certificate and trust bundle must be set", s.Name)
		}
	}
	if t := m.Tracing; t != nil {
		v.clusterRef(sub(nil, "tracing", ""), t.Cluster)
		v.percent(sub(nil, "tracing", ""), "sample percent", t.SamplePercent)
	}
	if len(v.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(v.errs...))
}

// place names where in the mesh a problem is, formatted only when an error
// is reported (Validate runs on every translation of large meshes).
type place struct {
	parent *place
	kind   string
	name   string
	quote  bool
}

// at is a named child place, e.g. at(p, "route", "r1") -> `... route "r1"`.
func at(parent *place, kind, name string) *place {
	return &place{parent: parent, kind: kind, name: name, quote: true}
}

// sub is an unquoted child place, e.g. sub(p, "mirror", "fraud.v3").
func sub(parent *place, kind, name string) *place {
	return &place{parent: parent, kind: kind, name: name}
}

func (p *place) String() string { return string(p.appendTo(nil)) }

// appendTo copies rather than concatenates: a result that shares no
// memory with p lets the compiler keep places on the stack.
func (p *place) appendTo(b []byte) []byte {
	if p.parent != nil {
		b = append(p.parent.appendTo(b), ' ')
	}
	b = append(b, p.kind...)
	switch {
	case p.name == "":
	case p.quote:
		b = strconv.AppendQuote(append(b, ' '), p.name)
	default:
		b = append(append(b, ' '), p.name...)
	}
	return b
}

type validator struct {
	m *Mesh
	// clusters finds m.Clusters by name for the tens of thousands of
	// references in a large mesh.
	clusters sortedIndex[Cluster]
	// manyDNS holds the endpoint count of every cluster with a host name
	// and other endpoints: proxyless gRPC cannot use those.
	manyDNS map[string]int
	errs    []error
}

func (v *validator) addf(format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf(format, args...))
}

// failf reports a problem at where; format starts with the %s that
// where's text fills. where is only read, so callers' places can stay on
// the stack: nothing is allocated for a valid object.
func (v *validator) failf(where *place, format string, args ...any) {
	v.addf(format, append([]any{where.String()}, args...)...)
}

// names checks n names are non-empty, sorted and unique.
func (v *validator) names(kind *place, n int, name func(int) string) {
	prev := ""
	for i := 0; i < n; i++ {
		cur := name(i)
		if cur == "" {
			v.failf(kind, "%s #%d: empty name", i)
		} else if i > 0 {
			switch c := strings.Compare(cur, prev); {
			case c == 0:
				v.failf(kind, "%s %q: duplicate name", cur)
			case c < 0:
				v.failf(kind, "%s %q: not sorted (after %q); call Normalize", cur, prev)
			}
		}
		prev = cur
	}
}

func (v *validator) clusterRef(where *place, name string) {
	if v.clusters.find(name) < 0 {
		v.failf(where, "%s: unknown cluster %q", name)
	}
}

func (v *validator) secretRef(where *place, name string) {
	if name != "" && v.m.Secret(name) == nil {
		v.failf(where, "%s: unknown secret %q", name)
	}
}

func (v *validator) percent(where *place, what string, p float64) {
	if !(p >= 0 && p <= 100) {
		v.failf(where, "%s: %s %v outside [0, 100]", what, p)
	}
}

func (v *validator) group(g *NodeGroup) {
	where := at(nil, "group", g.Name)
	v.names(sub(where, "listener", ""), len(g.Listeners), func(i int) string { return g.Listeners[i].Name })
	for _, c := range g.ExtraClusters {
		v.clusterRef(where, c)
	}
	routeConfigs := map[string]bool{}
	ecds := map[string]bool{}
	for i := range g.Listeners {
		l := &g.Listeners[i]
		lw := at(where, "listener", l.Name)
		v.listener(lw, l)
		if !l.InlineRoutes() {
			if routeConfigs[l.Routes.Name] {
				v.failf(lw, "%s: route configuration %q used by two listeners", l.Routes.Name)
			}
			routeConfigs[l.Routes.Name] = true
		}
		for _, f := range l.Filters {
			if ecds[f.Name] {
				v.failf(lw, "%s: filter config %q used by two listeners", f.Name)
			}
			ecds[f.Name] = true
		}
	}
}

func (v *validator) listener(where *place, l *Listener) {
	switch l.Kind {
	case ListenerGateway, ListenerInbound, ListenerOutbound:
		if l.Port == 0 || l.Port > 65535 {
			v.failf(where, "%s: port %d outside 1..65535", l.Port)
		}
	case ListenerAPI:
		if l.TLS != nil || l.Authorization != nil || len(l.Filters) > 0 {
			v.failf(where, "%s: an API listener takes no TLS, authorization or wasm filters")
		}
	case ListenerGRPCServer:
		if l.Port == 0 || l.Port > 65535 {
			v.failf(where, "%s: port %d outside 1..65535", l.Port)
		}
		if len(l.Filters) > 0 {
			v.failf(where, "%s: a gRPC server takes no wasm filters")
		}
		if l.TLS != nil && len(l.TLS.MatchSANs) > 0 {
			v.failf(where, "%s: a gRPC server cannot match client SANs; use authorization rules")
		}
	default:
		v.failf(where, "%s: unknown kind %q", l.Kind)
	}
	if l.Protocol != ProtocolGRPC && l.Protocol != ProtocolHTTP {
		v.failf(where, "%s: unknown protocol %q", l.Protocol)
	}
	if t := l.TLS; t != nil {
		if t.CertSecret == "" {
			v.failf(where, "%s: TLS without a certificate secret")
		}
		v.secretRef(where, t.CertSecret)
		v.secretRef(where, t.TrustSecret)
		if t.RequireClientCert && t.TrustSecret == "" {
			v.failf(where, "%s: client certificates required but no trust secret")
		}
	}
	for _, f := range l.Filters {
		if f.Name == "" || (f.Kind != FilterFanout && f.Kind != FilterSLO) {
			v.failf(where, "%s: filter %q of unknown kind %q", f.Name, f.Kind)
		}
		if (f.Code.Path == "") == (f.Code.URL == "") {
			v.failf(where, "%s: filter %q: exactly one of code path and URL must be set", f.Name)
		}
		if f.Code.URL != "" {
			v.clusterRef(sub(where, "filter", f.Name), f.Code.Cluster)
			if len(f.Code.SHA256) != 64 {
				v.failf(where, "%s: filter %q: remote code needs a hex sha256", f.Name)
			}
		}
	}
	if a := l.Authorization; a != nil && a.Action != AuthzAllow && a.Action != AuthzDeny {
		v.failf(where, "%s: unknown authorization action %q", a.Action)
	}
	if l.Routes.Name == "" {
		v.failf(where, "%s: route configuration without a name")
	}
	v.names(sub(where, "virtual host", ""), len(l.Routes.VirtualHosts), func(i int) string { return l.Routes.VirtualHosts[i].Name })
	// Route names are unique across the configuration: the wasm filters
	// key their per-route settings by them.
	var seen nameSet
	unique := uniqueInOrder(l.Routes.VirtualHosts)
	for _, vh := range l.Routes.VirtualHosts {
		seen.hint += len(vh.Routes)
	}
	for vi := range l.Routes.VirtualHosts {
		vh := &l.Routes.VirtualHosts[vi]
		vw := at(where, "virtual host", vh.Name)
		if len(vh.Domains) == 0 {
			v.failf(vw, "%s: no domains")
		}
		for ri := range vh.Routes {
			r := &vh.Routes[ri]
			rw := at(vw, "route", r.Name)
			if !unique {
				if r.Name == "" || seen.has(r.Name) {
					v.failf(rw, "%s: empty or duplicate route name")
				}
				seen.add(r.Name)
			}
			v.route(rw, r, l.Kind == ListenerGRPCServer)
			if l.Kind == ListenerAPI && v.manyDNS != nil {
				v.logicalDNS(rw, &r.Action)
			}
		}
	}
}

// logicalDNS reports the clusters of a proxyless gRPC client's route that
// gRPC-Go cannot resolve: it takes host names only in a LOGICAL_DNS
// cluster, which has exactly one endpoint.
func (v *validator) logicalDNS(where *place, a *RouteAction) {
	a.EachCluster(func(name string) {
		if n, ok := v.manyDNS[name]; ok {
			v.failf(where, "%s: cluster %q has a host-name endpoint among %d endpoints; proxyless gRPC accepts a host name only as a cluster's single endpoint (LOGICAL_DNS)", name, n)
		}
	})
}

// route checks one route; served routes (a gRPC server's) answer locally,
// so they name no destination.
func (v *validator) route(where *place, r *Route, served bool) {
	set := 0
	for _, p := range []string{r.Match.Path, r.Match.Prefix, r.Match.SeparatedPrefix} {
		if p != "" {
			set++
		}
	}
	if set != 1 {
		v.failf(where, "%s: exactly one of path, prefix and separatedPrefix must be set")
	}
	if p := r.Match.SeparatedPrefix; p != "" && (!strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.ContainsAny(p, "?#")) {
		v.failf(where, "%s: separatedPrefix %q must start with / and contain no trailing /, ? or #", p)
	}
	for _, h := range r.Match.Headers {
		kinds := 0
		for _, set := range []bool{h.Exact != "", h.Prefix != "", h.Regex != "", h.Present} {
			if set {
				kinds++
			}
		}
		if h.Name == "" || kinds != 1 {
			v.failf(where, "%s: header match %q needs a name and exactly one of exact, prefix, regex, present", h.Name)
		}
	}
	a := &r.Action
	if served && (len(a.Clusters) > 0 || len(a.Mirrors) > 0 || a.Fanout != nil) {
		v.failf(where, "%s: a gRPC server serves requests itself; its routes name no clusters")
	}
	if !served && len(a.Clusters) == 0 {
		v.failf(where, "%s: no destination cluster")
	}
	var total uint64
	for _, w := range a.Clusters {
		v.clusterRef(where, w.Name)
		total += uint64(w.Weight)
	}
	if len(a.Clusters) > 1 && total == 0 {
		v.failf(where, "%s: weights sum to zero")
	}
	if !slices.IsSortedFunc(a.Clusters, func(x, y WeightedCluster) int { return cmp.Compare(x.Name, y.Name) }) {
		v.failf(where, "%s: weighted clusters not sorted; call Normalize")
	}
	compared := 0
	for _, mi := range a.Mirrors {
		if mi.Compare {
			compared++
		}
		v.clusterRef(sub(where, "mirror", ""), mi.Cluster)
		v.percent(sub(where, "mirror", mi.Cluster), "percent", mi.Percent)
	}
	if compared > 1 {
		v.failf(where, "%s: %d compared shadows; the fanout filter compares one", compared)
	}
	if f := a.Fault; f != nil {
		v.percent(sub(where, "fault", ""), "delay percent", f.DelayPercent)
		v.percent(sub(where, "fault", ""), "abort percent", f.AbortPercent)
		if f.AbortPercent > 0 && (f.AbortHTTPStatus == 0) == (f.AbortGRPCStatus == 0) {
			v.failf(where, "%s fault: abort needs exactly one of an HTTP and a gRPC status")
		}
	}
	if f := a.Fanout; f != nil {
		for _, mem := range f.Members {
			v.clusterRef(sub(where, "fanout", ""), mem.Cluster)
		}
		if f.Quorum > uint32(len(f.Members)) {
			v.failf(where, "%s fanout: quorum %d above %d members", f.Quorum, len(f.Members))
		}
		if f.Stacking != nil && len(f.Stacking.Weights) != len(f.Members) {
			v.failf(where, "%s fanout: %d stacking weights for %d members", len(f.Stacking.Weights), len(f.Members))
		}
		if o := f.Observe; o != nil {
			v.clusterRef(sub(where, "fanout observe", ""), o.Cluster)
			if o.Route == "" || o.Percent <= 0 || o.Percent > 100 || f.Sequence {
				v.failf(where, "%s fanout observe: needs a route, a percent in (0, 100] and an ensemble, not a sequence")
			}
			for _, mem := range f.Members {
				if mem.Name == "" {
					v.failf(where, "%s fanout observe: member %q has no name", mem.Cluster)
				}
			}
		}
	}
}

func (v *validator) cluster(c *Cluster) {
	where := at(nil, "cluster", c.Name)
	if c.Protocol != ProtocolGRPC && c.Protocol != ProtocolHTTP {
		v.failf(where, "%s: unknown protocol %q", c.Protocol)
	}
	if t := c.TLS; t != nil {
		if t.TrustSecret == "" {
			v.failf(where, "%s: TLS without a trust secret")
		}
		v.secretRef(where, t.TrustSecret)
		v.secretRef(where, t.CertSecret)
	}
	if h := c.HealthCheck; h != nil && (h.Interval <= 0 || h.Timeout <= 0) {
		v.failf(where, "%s: health check needs a positive interval and timeout")
	}
	for _, l := range c.Localities {
		for _, e := range l.Endpoints {
			if e.Address == "" || e.Port == 0 || e.Port > 65535 {
				v.failf(where, "%s: endpoint %q port %d: needs an address and a port in 1..65535", e.Address, e.Port)
			}
		}
	}
}

// uniqueInOrder reports whether the route names of vhs, in order, are
// non-empty and strictly increasing, hence unique. Builders list a
// gateway's routes in the policy's order, which usually is this one, and
// checking it costs a tenth of a set of 20,000 names.
func uniqueInOrder(vhs []VirtualHost) bool {
	prev := ""
	for vi := range vhs {
		for ri := range vhs[vi].Routes {
			name := vhs[vi].Routes[ri].Name
			if name <= prev {
				return false
			}
			prev = name
		}
	}
	return true
}

// nameSet is a set of names that stays a slice while small: most route
// configurations (one per proxyless target) hold a route or two, and a map
// each would dominate validating thousands of them.
type nameSet struct {
	list []string
	m    map[string]bool
	// hint is how many names will be added: a map sized for them is not
	// rehashed as it grows.
	hint int
}

func (s *nameSet) has(name string) bool {
	if s.m != nil {
		return s.m[name]
	}
	return slices.Contains(s.list, name)
}

func (s *nameSet) add(name string) {
	if s.m != nil {
		s.m[name] = true
		return
	}
	s.list = append(s.list, name)
	if len(s.list) > 16 {
		s.m = make(map[string]bool, max(2*len(s.list), s.hint))
		for _, n := range s.list {
			s.m[n] = true
		}
	}
}
