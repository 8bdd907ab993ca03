package model

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// TrustBundleSecret is the SDS name of the mesh's trust bundle.
const TrustBundleSecret = "trust-bundle"

// ProxylessGroup is the node group of proxyless gRPC clients.
const ProxylessGroup = "proxyless"

// ErrMissingSecret is wrapped when Build needs TLS material the options do
// not provide (see RequiredSecrets).
var ErrMissingSecret = errors.New("missing secret")

// BuildOptions are Build's inputs besides the policy.
type BuildOptions struct {
	// Secrets are the certificates (named by SPIFFE ID) and the trust
	// bundle (named TrustBundleSecret) that STRICT mTLS needs; Build
	// includes those it references. RequiredSecrets lists them.
	Secrets []Secret
	// Observer, when set, makes the fanout filter of every adaptive
	// ensemble post its members' answers to the control plane, through
	// ObserverCluster, which the groups that serve one receive.
	Observer *Observer
}

// Names of generated objects, in one place so that docs/policy.md, the xds
// golden files and operators' admin pages agree.

// GatewayGroupName is the node group of Gateway name.
func GatewayGroupName(name string) string { return "gateway-" + name }

// SidecarGroupName is the node group of the sidecars of service.
func SidecarGroupName(service string) string { return "sidecar-" + service }

// ClusterName is the cluster of a service version.
func ClusterName(service, version string) string { return service + "." + version }

// localClusterName is a sidecar's cluster for its local instance; '|'
// cannot occur in a service or version name, so it collides with nothing.
func localClusterName(service string) string { return service + "|local" }

// mtlsClusterName is the copy of cluster a caller with its own client
// certificate uses under STRICT mTLS.
func (b *builder) mtlsClusterName(cluster string, caller *policy.Identity) string {
	return b.str.concat(cluster, "|", caller.Namespace, ".", caller.ServiceAccount)
}

// RequiredSecrets returns the SDS names Build will reference for pm, sorted:
// with STRICT mTLS, the SPIFFE ID of every sidecar'd service and of every
// gateway or sidecar calling one, plus TrustBundleSecret; none otherwise.
// The certificate issuer issues these before Build.
func RequiredSecrets(pm *policy.Mesh) []string {
	if pm == nil || pm.Config == nil {
		return nil
	}
	if pm.Config.Spec.MTLS.Mode != policy.MTLSStrict || len(pm.Sidecars) == 0 {
		// Only STRICT mTLS with sidecars references secrets (see secure,
		// sidecar and proxylessSidecar), so for other meshes the control
		// plane's load, which asks before every Build, need not build the
		// mesh twice.
		return []string{}
	}
	b := newBuilder(pm, BuildOptions{}, 0)
	b.build()
	out := make([]string, 0, len(b.needSecrets))
	for n := range b.needSecrets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Build converts a loaded policy into the IR: one cluster per service
// version (with its endpoints), one node group per gateway and per sidecar,
// and a proxyless group with an API listener per gRPC route. It is pure and
// deterministic: the same policy gives an Equal Mesh.
//
// # Errors
//
// ErrMissingSecret (wrapped, naming the secrets) when STRICT mTLS needs
// TLS material opts lacks; ErrInvalid (wrapped) if the result breaks an IR
// invariant, which means a bug here since pm was validated by Load.
func Build(pm *policy.Mesh, opts BuildOptions) (*Mesh, error) {
	if pm == nil || pm.Config == nil {
		return nil, errors.New("build model: no policy (use policy.Load)")
	}
	return buildWith(pm, opts, 0)
}

// buildWith is Build with workers goroutines, or as many as suit the mesh
// if workers is 0.
func buildWith(pm *policy.Mesh, opts BuildOptions, workers int) (*Mesh, error) {
	b := newBuilder(pm, opts, workers)
	m := b.build()
	secrets, err := b.secrets()
	if err != nil {
		return nil, err
	}
	m.Secrets = secrets
	m.normalize(b.workers)
	if err := m.validate(b.workers); err != nil {
		return nil, fmt.Errorf("build model: %w", err)
	}
	m.validated = true
	return m, nil
}

// build makes everything but the secrets, recording which it needs.
func (b *builder) build() *Mesh {
	m := &Mesh{}
	m.Clusters = b.plain
	// Each node group is a part, weighted by the routes it converts; a
	// fork builds a span of them (parallel.go).
	var parts []func(f *builder) (NodeGroup, bool)
	var weights []int
	for _, g := range b.pm.Gateways {
		parts = append(parts, func(f *builder) (NodeGroup, bool) { return f.gateway(g), true })
		weights = append(weights, 1+len(g.Spec.Routes))
	}
	for _, sc := range b.pm.Sidecars {
		if sc.Spec.Mode == policy.SidecarProxyless {
			parts = append(parts, func(f *builder) (NodeGroup, bool) { return f.proxylessSidecar(sc), true })
			weights = append(weights, 1+len(b.pm.Routes))
			continue
		}
		parts = append(parts, func(f *builder) (NodeGroup, bool) { return f.sidecar(sc), true })
		w := 1
		if out := sc.Spec.Outbound; out != nil {
			w += len(out.Routes)
		}
		weights = append(weights, w)
	}
	parts = append(parts, func(f *builder) (NodeGroup, bool) { return f.proxyless() })
	weights = append(weights, 1+len(b.pm.Routes))
	groups := make([]NodeGroup, len(parts))
	made := make([]bool, len(parts))
	forks := b.inSpans(len(parts), func(i int) int { return weights[i] }, func(f *builder, lo, hi int) {
		for i := lo; i < hi; i++ {
			groups[i], made[i] = parts[i](f)
		}
	})
	for _, f := range forks {
		b.join(f)
	}
	for i, g := range groups {
		if made[i] {
			m.Groups = append(m.Groups, g)
		}
	}
	m.Clusters = append(m.Clusters, b.extra...)
	if o := b.opts.Observer; o != nil && hasAdaptive(b.pm) {
		m.Clusters = append(m.Clusters, observerCluster(o))
	}
	if t := b.pm.Config.Spec.Tracing; t != nil {
		m.Tracing = &Tracing{Cluster: b.clusterName(t.Collector.Service, t.Collector.Version),
			ServiceName: t.ServiceName, SamplePercent: t.SamplingPercentage}
	}
	return m
}

// builder holds what the conversion of one policy needs.
type builder struct {
	pm     *policy.Mesh
	opts   BuildOptions
	td     string
	strict bool
	// workers is how many goroutines build the mesh (parallel.go).
	workers int
	// sidecarOf is the set of services that have a sidecar.
	sidecarOf map[string]*policy.Sidecar
	// extra are clusters made on demand (local and mTLS copies), by name.
	extra     []Cluster
	extraSeen map[string]bool
	// needSecrets are the SDS names referenced.
	needSecrets map[string]bool
	// svcs parallels pm.Services, which services indexes by name.
	services sortedIndex[*policy.Service]
	svcs     []svcInfo
	// plain are the plaintext clusters, one per service version.
	plain  []Cluster
	routes sortedIndex[*policy.Route]
	// resolved parallels pm.Routes, filled on a route's first use.
	resolved []routeInfo

	// Where the many small strings and slices of a large mesh come from
	// (see alloc.go).
	str       strArena
	strs      slab[string]
	weights   slab[WeightedCluster]
	headers   slab[HeaderMatch]
	routeSlab slab[Route]
	vhosts    slab[VirtualHost]
	locs      slab[Locality]
	endpoints slab[Endpoint]
}

// svcInfo is what every reference to a service needs, computed once per
// service rather than once per route or version that names it.
type svcInfo struct {
	s *policy.Service
	// spiffe is the SPIFFE ID of the service's identity.
	spiffe string
	// clusters are the plaintext clusters of the versions, in version
	// order: a part of builder.plain, so only valid until Normalize sorts
	// the built Mesh's clusters.
	clusters []Cluster
	// prefix is the length of the service's name and the dot after it.
	prefix int
}

// routeInfo is what a route resolves to for every listener that has it:
// resolving touches policy objects spread over the heap, which costs more
// than the rest of a route's conversion.
type routeInfo struct {
	done bool
	// allGRPC says every destination speaks gRPC.
	allGRPC bool
	// split is the route's split with each destination's ClusterName, in
	// the policy's order.
	split []WeightedCluster
	// shared says every route made from split may use split itself: it is
	// in the order Normalize sorts to, so Normalize never writes it. A
	// 10,000-route mesh has three such routes per policy route (gRPC and
	// REST through a gateway, an API listener), each otherwise a copy.
	shared bool
}

// cluster returns the cluster name of version, or "" if s has no such
// version.
func (si *svcInfo) cluster(version string) string {
	// The version is the end of the cluster's name, which is at hand,
	// unlike the policy's version names spread over the heap.
	for i := range si.clusters {
		if c := si.clusters[i].Name; len(c) == si.prefix+len(version) && c[si.prefix:] == version {
			return c
		}
	}
	return ""
}

// newBuilder prepares the conversion of pm by workers goroutines, or as
// many as suit its size if workers is 0.
func newBuilder(pm *policy.Mesh, opts BuildOptions, workers int) *builder {
	b := &builder{pm: pm, opts: opts, td: pm.Config.Spec.TrustDomain,
		strict:    pm.Config.Spec.MTLS.Mode == policy.MTLSStrict,
		sidecarOf: map[string]*policy.Sidecar{}, extraSeen: map[string]bool{}, needSecrets: map[string]bool{},
		services: newSortedIndex(pm.Services, func(s **policy.Service) string { return (*s).Metadata.Name }),
		routes:   newSortedIndex(pm.Routes, func(r **policy.Route) string { return (*r).Metadata.Name }),
		svcs:     make([]svcInfo, len(pm.Services)), resolved: make([]routeInfo, len(pm.Routes))}
	// One plaintext cluster per service version, made while the service
	// is at hand (it is read once instead of once per pass). Sized up
	// front: growing a slice of 20,000 clusters copies each several times.
	first := make([]int, len(pm.Services)+1)
	for i, s := range pm.Services {
		first[i+1] = first[i] + len(s.Spec.Versions)
	}
	b.plain = make([]Cluster, first[len(pm.Services)])
	b.workers = workers
	if workers == 0 {
		b.workers = workersFor(len(pm.Routes), len(b.plain))
	}
	b.inSpans(len(pm.Services), func(i int) int { return 1 + first[i+1] - first[i] }, func(f *builder, lo, hi int) {
		for i := lo; i < hi; i++ {
			f.fillService(i, b.plain[first[i]:first[i+1]:first[i+1]])
		}
	})
	if b.workers > 1 {
		// Resolve every route now, so that the forks building the groups
		// only read b.resolved.
		b.inSpans(len(pm.Routes), func(int) int { return 1 }, func(f *builder, lo, hi int) {
			for i := lo; i < hi; i++ {
				f.resolve(i)
			}
		})
	}
	for _, sc := range pm.Sidecars {
		// A proxyless client-only workload terminates no mesh traffic.
		if sc.Spec.Mode != policy.SidecarProxyless || sc.Spec.Inbound.Port != 0 {
			b.sidecarOf[sc.Spec.Service] = sc
		}
	}
	return b
}

// fillService records what references to pm.Services[i] need and makes
// its plaintext clusters in clusters, its part of b.plain.
func (b *builder) fillService(i int, clusters []Cluster) {
	s := b.pm.Services[i]
	si := &b.svcs[i]
	id := s.Spec.Identity
	si.s = s
	si.spiffe = b.str.concat("spiffe://", b.td, "/ns/", id.Namespace, "/sa/", id.ServiceAccount)
	si.prefix = len(s.Metadata.Name) + 1
	si.clusters = clusters
	for j, v := range s.Spec.Versions {
		b.fillCluster(&clusters[j], s, v, b.str.concat(s.Metadata.Name, ".", v.Name), si.spiffe)
	}
}

func (b *builder) spiffe(id policy.Identity) string { return id.SPIFFEID(b.td) }

// service returns the precomputed names of service, or nil if it is not
// in the policy.
func (b *builder) service(name string) *svcInfo {
	if i := b.services.find(name); i >= 0 {
		return &b.svcs[i]
	}
	return nil
}

// route returns the route named name and what it resolves to, or nils.
func (b *builder) route(name string) (*policy.Route, *routeInfo) {
	if i := b.routes.find(name); i >= 0 {
		return b.pm.Routes[i], b.resolve(i)
	}
	return nil, nil
}

// resolve returns what pm.Routes[i] resolves to.
func (b *builder) resolve(i int) *routeInfo {
	ri := &b.resolved[i]
	if ri.done {
		return ri
	}
	r := b.pm.Routes[i]
	ri.done = true
	ri.allGRPC = b.allGRPCBeyondSplit(r)
	ri.split = b.weights.take(len(r.Spec.Split))
	var si *svcInfo
	for j, d := range r.Spec.Split {
		// A split's destinations are nearly always versions of one service.
		if j == 0 || d.Service != r.Spec.Split[j-1].Service {
			si = b.service(d.Service)
		}
		if si == nil || si.s.Spec.Protocol != policy.ProtocolGRPC {
			ri.allGRPC = false
		}
		name := ""
		if si != nil {
			name = si.cluster(d.Version)
		}
		if name == "" {
			name = ClusterName(d.Service, d.Version)
		}
		ri.split[j] = WeightedCluster{Name: name, Weight: d.Weight}
	}
	ri.shared = slices.IsSortedFunc(ri.split, compareWeighted)
	return ri
}

// clusterName is ClusterName, shared with every other reference to the
// same version.
func (b *builder) clusterName(service, version string) string {
	if si := b.service(service); si != nil {
		if n := si.cluster(version); n != "" {
			return n
		}
	}
	return ClusterName(service, version)
}

func protocol(p string) Protocol {
	if p == policy.ProtocolHTTP {
		return ProtocolHTTP
	}
	return ProtocolGRPC
}

// cluster makes the cluster name of version v of s, whose identity has
// the SPIFFE ID identity.
func (b *builder) cluster(s *policy.Service, v policy.Version, name, identity string) Cluster {
	var c Cluster
	b.fillCluster(&c, s, v, name, identity)
	return c
}

// fillCluster is cluster writing into c, which is zero: a Cluster is
// large, and the plaintext ones are made in place.
func (b *builder) fillCluster(c *Cluster, s *policy.Service, v policy.Version, name, identity string) {
	sp := &s.Spec
	c.Name, c.Service, c.Version, c.Identity = name, s.Metadata.Name, v.Name, identity
	c.Protocol, c.ConnectTimeout = protocol(sp.Protocol), sp.ConnectTimeout.D()
	if h := sp.HealthCheck; h != nil {
		c.HealthCheck = &HealthCheck{Interval: h.Interval.D(), Timeout: h.Timeout.D(), HealthyThreshold: h.HealthyThreshold,
			UnhealthyThreshold: h.UnhealthyThreshold, Path: h.Path, GRPCService: h.GRPCService}
	}
	if l := sp.ConnectionLimits; l != nil {
		c.Limits = &CircuitBreaker{MaxConnections: l.MaxConnections, MaxPendingRequests: l.MaxPendingRequests,
			MaxRequests: l.MaxRequests, MaxRetries: l.MaxRetries}
	}
	if o := sp.OutlierDetection; o != nil {
		c.Outlier = &OutlierDetection{Consecutive5xx: o.Consecutive5xx, Interval: o.Interval.D(),
			BaseEjectionTime: o.BaseEjectionTime.D(), MaxEjectionPercent: o.MaxEjectionPercent}
	}
	c.Localities = b.localities(v.Endpoints)
}

// localities groups endpoints by region and zone, each locality weighted 1
// (proxyless gRPC rejects a locality without a weight).
func (b *builder) localities(eps []policy.Endpoint) []Locality {
	if len(eps) == 0 {
		return nil
	}
	// Most versions have all their endpoints in one place: carve that
	// locality and its endpoints from the slabs.
	if !slices.ContainsFunc(eps[1:], func(e policy.Endpoint) bool { return e.Region != eps[0].Region || e.Zone != eps[0].Zone }) {
		out := b.locs.take(1)
		out[0] = Locality{Region: eps[0].Region, Zone: eps[0].Zone, Weight: 1, Endpoints: b.endpoints.take(len(eps))}
		for i, e := range eps {
			out[0].Endpoints[i] = Endpoint{Address: e.Address, Port: e.Port, Weight: e.Weight}
		}
		return out
	}
	var out []Locality
	for _, e := range eps {
		// A linear search: a version has a handful of localities, and a
		// map per cluster costs 20,000 maps in a large mesh.
		i := slices.IndexFunc(out, func(l Locality) bool { return l.Region == e.Region && l.Zone == e.Zone })
		if i < 0 {
			i = len(out)
			out = append(out, Locality{Region: e.Region, Zone: e.Zone, Weight: 1})
		}
		out[i].Endpoints = append(out[i].Endpoints, Endpoint{Address: e.Address, Port: e.Port, Weight: e.Weight})
	}
	return out
}

func (b *builder) addExtra(c Cluster) {
	if !b.extraSeen[c.Name] {
		b.extraSeen[c.Name] = true
		b.extra = append(b.extra, c)
	}
}

// caller is who sends a group's outbound requests: it decides which copy of
// a cluster (plain or with this caller's client certificate) routes use.
type caller struct {
	// identity is nil for proxyless clients, whose TLS is not from SDS.
	identity *policy.Identity
}

// clusterFor returns the cluster name c uses to reach service version.
// Under STRICT mTLS a service with a sidecar only accepts mTLS, so a caller
// with an identity gets a copy of the cluster presenting its certificate.
func (b *builder) clusterFor(c caller, service, version string) string {
	return b.secure(c, service, version, b.clusterName(service, version))
}

// secure is clusterFor given the plain cluster name of service version.
func (b *builder) secure(c caller, service, version, name string) string {
	if !b.strict || b.sidecarOf[service] == nil || c.identity == nil {
		return name
	}
	mtls := b.mtlsClusterName(name, c.identity)
	if b.extraSeen[mtls] {
		// Made (and its secrets recorded) by an earlier reference.
		return mtls
	}
	s := b.pm.Service(service)
	var v policy.Version
	for _, x := range s.Spec.Versions {
		if x.Name == version {
			v = x
		}
	}
	cl := b.cluster(s, v, name, b.spiffe(s.Spec.Identity))
	cl.Name = mtls
	cert := b.spiffe(*c.identity)
	cl.TLS = &UpstreamTLS{CertSecret: cert, TrustSecret: TrustBundleSecret, MatchSANs: []string{cl.Identity}}
	b.needSecrets[cert] = true
	b.needSecrets[TrustBundleSecret] = true
	b.addExtra(cl)
	return cl.Name
}

func (b *builder) gateway(g *policy.Gateway) NodeGroup {
	sp := &g.Spec
	name := g.Metadata.Name
	c := caller{identity: &sp.Identity}
	routes := b.routeList(c, sp.Routes, true)
	l := Listener{Name: name, Kind: ListenerGateway, Address: sp.Address, Port: sp.Port, Protocol: protocol(sp.Protocol),
		Routes: RouteConfig{Name: name, VirtualHosts: []VirtualHost{{Name: name, Domains: slices.Clone(sp.Hosts), Routes: routes}}}}
	l.Filters = b.filters(name, routes)
	return NodeGroup{Name: GatewayGroupName(name),
		Nodes:     NodeSelector{IDs: slices.Clone(sp.Nodes.IDs), Role: RoleGateway, Service: sp.Nodes.Service},
		Listeners: []Listener{l}}
}

func (b *builder) sidecar(sc *policy.Sidecar) NodeGroup {
	sp := &sc.Spec
	svc := b.pm.Service(sp.Service)
	local := Cluster{Name: localClusterName(sp.Service), Service: sp.Service, Protocol: protocol(svc.Spec.Protocol),
		ConnectTimeout: svc.Spec.ConnectTimeout.D(), Identity: b.spiffe(svc.Spec.Identity),
		Localities: []Locality{{Region: policy.DefaultRegion, Weight: 1, Endpoints: []Endpoint{{Address: "127.0.0.1", Port: sp.Inbound.AppPort}}}}}
	b.addExtra(local)
	inName := sp.Service + ".inbound"
	in := Listener{Name: inName, Kind: ListenerInbound, Address: sp.Inbound.Address, Port: sp.Inbound.Port,
		Protocol: protocol(svc.Spec.Protocol),
		Routes: RouteConfig{Name: inName, VirtualHosts: []VirtualHost{{Name: "inbound", Domains: []string{"*"}, Routes: []Route{
			{Name: "inbound", Match: RouteMatch{Prefix: "/"}, Action: RouteAction{Clusters: []WeightedCluster{{Name: local.Name, Weight: 1}}}}}}}},
		Authorization: b.authorization(sp.Service)}
	if b.strict {
		cert := b.spiffe(svc.Spec.Identity)
		in.TLS = &DownstreamTLS{CertSecret: cert, TrustSecret: TrustBundleSecret, RequireClientCert: true}
		b.needSecrets[cert] = true
		b.needSecrets[TrustBundleSecret] = true
	}
	g := NodeGroup{Name: SidecarGroupName(sp.Service),
		Nodes:     NodeSelector{IDs: slices.Clone(sp.Nodes), Role: RoleSidecar, Service: sp.Service},
		Listeners: []Listener{in}}
	if out := sp.Outbound; out != nil {
		outName := sp.Service + ".outbound"
		routes := b.routeList(caller{identity: &svc.Spec.Identity}, out.Routes, true)
		g.Listeners = append(g.Listeners, Listener{Name: outName, Kind: ListenerOutbound, Address: out.Address, Port: out.Port,
			Protocol: ProtocolHTTP,
			Routes:   RouteConfig{Name: outName, VirtualHosts: []VirtualHost{{Name: "outbound", Domains: []string{"*"}, Routes: routes}}},
			Filters:  b.filters(outName, routes)})
	}
	return g
}

// proxyless makes an API listener per route whose destinations all speak
// gRPC, named by the route's target: a client dials xds:///<target>.
func (b *builder) proxyless() (NodeGroup, bool) {
	g := NodeGroup{Name: ProxylessGroup, Nodes: NodeSelector{Role: RoleProxyless}, Listeners: b.apiListeners(caller{})}
	return g, len(g.Listeners) > 0
}

func (b *builder) apiListeners(c caller) []Listener {
	out := make([]Listener, 0, len(b.pm.Routes))
	for i, r := range b.pm.Routes {
		ri := b.resolve(i)
		if !ri.allGRPC {
			continue
		}
		// A proxyless client matches one form: the rules, then the split.
		routes := b.expand(b.routeSlab.take(len(r.Spec.Rules) + 1)[:0], c, r, ri, false)
		t := r.Spec.Target
		vhs := b.vhosts.take(1)
		domains := b.strs.take(1)
		domains[0] = t
		vhs[0] = VirtualHost{Name: t, Domains: domains, Routes: routes}
		out = append(out, Listener{Name: t, Kind: ListenerAPI, Protocol: ProtocolGRPC,
			Routes: RouteConfig{Name: t, VirtualHosts: vhs}})
	}
	return out
}

// GRPCServerListenerName is the listener an xDS-enabled gRPC server on
// address:port asks for with gRPC's default
// server_listener_resource_name_template.
func GRPCServerListenerName(address string, port uint32) string {
	return "grpc/server?xds.resource.listening_address=" + net.JoinHostPort(address, strconv.FormatUint(uint64(port), 10))
}

// ProxylessGroupName is the node group of service's proxyless workloads
// (a Sidecar with mode proxyless).
func ProxylessGroupName(service string) string { return "proxyless-" + service }

// proxylessSidecar makes the group of a service whose instances use xDS
// themselves: the API listeners, with mTLS copies of clusters presenting
// the service's identity, and, when it serves, the gRPC server's listener
// with its TLS and authorization.
func (b *builder) proxylessSidecar(sc *policy.Sidecar) NodeGroup {
	sp := &sc.Spec
	svc := b.pm.Service(sp.Service)
	g := NodeGroup{Name: ProxylessGroupName(sp.Service),
		Nodes:     NodeSelector{IDs: slices.Clone(sp.Nodes), Role: RoleProxyless, Service: sp.Service},
		Listeners: b.apiListeners(caller{identity: &svc.Spec.Identity})}
	if sp.Inbound.Port == 0 {
		return g // a client only
	}
	name := sp.Service + ".grpc-server"
	l := Listener{Name: GRPCServerListenerName(sp.Inbound.Address, sp.Inbound.Port), Kind: ListenerGRPCServer,
		Address: sp.Inbound.Address, Port: sp.Inbound.Port, Protocol: ProtocolGRPC,
		Routes: RouteConfig{Name: name, VirtualHosts: []VirtualHost{{Name: name, Domains: []string{"*"},
			Routes: []Route{{Name: "serve", Match: RouteMatch{Prefix: "/"}}}}}},
		Authorization: b.authorization(sp.Service)}
	if b.strict {
		cert := b.spiffe(svc.Spec.Identity)
		l.TLS = &DownstreamTLS{CertSecret: cert, TrustSecret: TrustBundleSecret, RequireClientCert: true}
		b.needSecrets[cert] = true
		b.needSecrets[TrustBundleSecret] = true
	}
	g.Listeners = append(g.Listeners, l)
	return g
}

// allGRPCBeyondSplit reports whether every destination of r outside its
// split (which resolve checks) is a grpc service.
func (b *builder) allGRPCBeyondSplit(r *policy.Route) bool {
	ok := true
	check := func(service string) {
		if s := b.service(service); s == nil || s.s.Spec.Protocol != policy.ProtocolGRPC {
			ok = false
		}
	}
	for _, rule := range r.Spec.Rules {
		for _, d := range rule.Split {
			check(d.Service)
		}
	}
	if e := r.Spec.Ensemble; e != nil && len(e.Members) > 0 {
		check(e.Members[0].Service)
	}
	if r.Spec.Match.Model != "" && r.Spec.Match.Protocol == policy.MatchHTTP {
		ok = false
	}
	return ok
}

// filters returns the wasm filters listener needs: fanout if a route has an
// ensemble or a compared shadow, or selects a model over gRPC (the filter
// gives requests of standard OIP clients the model header from their
// message), slo if a route has objectives.
func (b *builder) filters(listener string, routes []Route) []WasmFilter {
	var fanout, slo bool
	for _, r := range routes {
		fanout = fanout || r.Action.Fanout != nil || slices.ContainsFunc(r.Action.Mirrors, func(m Mirror) bool { return m.Compare }) ||
			(r.Match.GRPC && r.Match.Prefix == OIPModelMethodPrefix)
		slo = slo || r.Action.SLO != nil
	}
	var out []WasmFilter
	fm := &b.pm.Config.Spec.Filters
	if fanout {
		out = append(out, WasmFilter{Name: listener + ".fanout", Kind: FilterFanout, Code: b.code(&fm.Fanout)})
	}
	if slo {
		out = append(out, WasmFilter{Name: listener + ".slo", Kind: FilterSLO, Code: b.code(&fm.SLO)})
	}
	return out
}

func (b *builder) code(w *policy.WasmModule) WasmCode {
	if r := w.Remote; r != nil {
		return WasmCode{URL: r.URL, SHA256: r.SHA256, Cluster: ClusterName(r.Service, r.Version)}
	}
	return WasmCode{Path: w.Path}
}

// authorization merges the AuthorizationPolicies of service (validation
// made sure they share one action) into the RBAC of its inbound listener.
func (b *builder) authorization(service string) *Authorization {
	var az *Authorization
	for _, p := range b.pm.Authorizations {
		if p.Spec.Service != service {
			continue
		}
		if az == nil {
			az = &Authorization{Action: AuthzAllow}
			if p.Spec.Action == policy.ActionDeny {
				az.Action = AuthzDeny
			}
		}
		for _, r := range p.Spec.Rules {
			az.Rules = append(az.Rules, b.authzRules(p.Metadata.Name+"."+r.Name, r)...)
		}
	}
	return az
}

// authzRules turns one policy rule into IR rules: requests are matched by
// path/prefix plus headers, so each model or route form is its own rule,
// all with the same principals.
func (b *builder) authzRules(name string, r policy.AuthzRule) []AuthzRule {
	principals := b.principals(r.From)
	var out []AuthzRule
	if len(r.To.Paths)+len(r.To.PathPrefixes) > 0 || (len(r.To.Models) == 0 && len(r.To.Routes) == 0) {
		out = append(out, AuthzRule{Name: name, Principals: principals,
			Paths: slices.Clone(r.To.Paths), Prefixes: slices.Clone(r.To.PathPrefixes)})
	}
	add := func(prefix string, fs []form) {
		for _, f := range fs {
			rule := AuthzRule{Name: name + "." + prefix + f.suffix, Principals: slices.Clone(principals), Headers: f.match.Headers}
			switch {
			case f.match.Path != "":
				rule.Paths = []string{f.match.Path}
			case f.match.SeparatedPrefix != "":
				// RBAC has no separated prefix: the path itself or below it.
				rule.Paths = []string{f.match.SeparatedPrefix}
				rule.Prefixes = []string{f.match.SeparatedPrefix + "/"}
			case f.match.Prefix != "/":
				rule.Prefixes = []string{f.match.Prefix}
			}
			out = append(out, rule)
		}
	}
	for _, m := range r.To.Models {
		fs, n := b.forms(policy.RouteMatch{Model: m, Protocol: policy.MatchAny}, true)
		add("model-"+m, fs[:n])
	}
	for _, rn := range r.To.Routes {
		fs, n := b.forms(b.pm.Route(rn).Spec.Match, true)
		add("route-"+rn, fs[:n])
	}
	return out
}

// principals resolves callers to SPIFFE IDs: namespaces to the identities
// of the services and gateways in them.
func (b *builder) principals(f policy.AuthzFrom) []string {
	set := map[string]bool{}
	for _, id := range f.Identities {
		set[id] = true
	}
	for _, s := range f.Services {
		set[b.spiffe(b.pm.Service(s).Spec.Identity)] = true
	}
	for _, gn := range f.Gateways {
		for _, g := range b.pm.Gateways {
			if g.Metadata.Name == gn {
				set[b.spiffe(g.Spec.Identity)] = true
			}
		}
	}
	for _, ns := range f.Namespaces {
		for _, id := range identitiesIn(b.pm, ns) {
			set[b.spiffe(id)] = true
		}
	}
	var out []string
	for id := range set {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// identitiesIn returns the identities of the services and gateways in
// namespace ns.
func identitiesIn(pm *policy.Mesh, ns string) []policy.Identity {
	var out []policy.Identity
	for _, s := range pm.Services {
		if s.Spec.Identity.Namespace == ns {
			out = append(out, s.Spec.Identity)
		}
	}
	for _, g := range pm.Gateways {
		if g.Spec.Identity.Namespace == ns {
			out = append(out, g.Spec.Identity)
		}
	}
	return out
}

// secrets returns the referenced secrets from the options.
func (b *builder) secrets() ([]Secret, error) {
	have := map[string]Secret{}
	for _, s := range b.opts.Secrets {
		have[s.Name] = s
	}
	var out []Secret
	var missing []string
	for name := range b.needSecrets {
		if s, ok := have[name]; ok {
			out = append(out, s)
		} else {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("build model: STRICT mTLS needs %w(s) %s", ErrMissingSecret, strings.Join(missing, ", "))
	}
	return out, nil
}
