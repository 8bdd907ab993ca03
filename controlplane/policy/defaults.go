package policy

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/maestro-ml/maestro/internal/parallel"
)

// Defaults, in one place; docs/policy.md and the `doc` tags repeat them.
const (
	DefaultNamespace       = "default"
	DefaultTrustDomain     = "maestro.local"
	DefaultModelHeader     = "x-maestro-model"
	DefaultCAStateDir      = ".maestro/ca"
	DefaultRootTTL         = Duration(365 * 24 * time.Hour)
	DefaultCertTTL         = Duration(24 * time.Hour)
	DefaultRotateAt        = 2.0 / 3.0
	DefaultPKIMount        = "pki"
	DefaultVaultTokenEnv   = "VAULT_TOKEN"
	DefaultKubernetesJWT   = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	DefaultSamplingPercent = 1.0
	DefaultWasmDir         = "/etc/maestro/wasm/"
	DefaultConnectTimeout  = Duration(time.Second)
	DefaultHealthInterval  = Duration(10 * time.Second)
	DefaultHealthTimeout   = Duration(time.Second)
	DefaultHealthPath      = "/v2/health/ready"
	DefaultRegion          = "local"
	DefaultRetryAttempts   = 2
	DefaultEnsembleTimeout = Duration(time.Second)
	DefaultSLOWindow       = Duration(30 * 24 * time.Hour)
	DefaultStepInterval    = Duration(time.Minute)
	DefaultMinRequests     = 100
	DefaultMaxErrorRate    = 1.0
	DefaultAdaptiveMin     = 0.05
	DefaultAdaptiveMax     = 1.0
	DefaultAdaptiveEvery   = Duration(30 * time.Second)
	DefaultSmoothing       = 0.5
	DefaultGatewayAddress  = "0.0.0.0"
	DefaultInboundAddress  = "0.0.0.0"
	DefaultInboundPort     = 15006
	DefaultOutboundAddress = "127.0.0.1"
	DefaultOutboundPort    = 15001
)

// DefaultRetryOn are the retry conditions when a route gives none: failures
// before a response (connect, reset) and "try again" answers of gRPC
// (unavailable) and HTTP (5xx).
func DefaultRetryOn() []string { return []string{"5xx", "connect-failure", "reset", "unavailable"} }

// DefaultBurnWindows are the SRE workbook's page/page/ticket windows for a
// 30-day budget, each with its long window.
func DefaultBurnWindows() []BurnWindow {
	return []BurnWindow{
		{Window: Duration(time.Hour), BurnRate: 14.4},
		{Window: Duration(6 * time.Hour), BurnRate: 6},
		{Window: Duration(3 * 24 * time.Hour), BurnRate: 1},
	}
}

// DefaultRolloutSteps are the weights a rollout walks when it gives none.
func DefaultRolloutSteps() []uint32 { return []uint32{5, 25, 50, 100} }

// applyDefaults fills every unset field whose default depends on other
// documents (service references, a route's only version, a model match's
// protocol), and the mesh settings when no Mesh document was given. It runs
// before validation and tolerates invalid input (unknown references are
// left for validate to report). Each document's own defaults are already
// applied (defaultDocument). Routes are defaulted in spans side by side
// (parallel.Spans): each reads services and writes only itself.
func applyDefaults(ctx context.Context, m *Mesh) error {
	if m.Config == nil {
		m.Config = &MeshConfig{doc: doc{Metadata: Metadata{Name: "default"}, Source: Source{File: "(defaults)"}, pos: map[string]Source{}}}
		defaultDocument(m.Config)
	}
	// Documents share their slices and pointers with the Loader's cache
	// and with earlier Meshes (clone.go): what changes here is copied
	// first, and only when it does change.
	ss := &serviceCursor{m: m}
	if t := m.Config.Spec.Tracing; t != nil {
		if s, v := defaultRef(ss, "", t.Collector.Service, t.Collector.Version); s != t.Collector.Service || v != t.Collector.Version {
			c := *t
			c.Collector.Service, c.Collector.Version = s, v
			m.Config.Spec.Tracing = &c
		}
	}
	for _, w := range []*WasmModule{&m.Config.Spec.Filters.Fanout, &m.Config.Spec.Filters.SLO} {
		if rw := w.Remote; rw != nil {
			if s, v := defaultRef(ss, "", rw.Service, rw.Version); s != rw.Service || v != rw.Version {
				c := *rw
				c.Service, c.Version = s, v
				w.Remote = &c
			}
		}
	}
	return parallel.Spans(ctx, len(m.Routes), parallel.Parts(len(m.Routes), splitAbove), func(_, lo, hi int) error {
		// A cursor per span: it remembers where its span looked last.
		ss := &serviceCursor{m: m}
		for _, r := range m.Routes[lo:hi] {
			defaultRouteRefs(ss, r)
		}
		return nil
	})
}

// defaultDocument fills the unset fields of one document whose defaults
// depend on that document alone. The Loader applies them once, when it
// decodes a document, and caches the result: they need not be redone on
// every reload. Nothing here may read another document.
func defaultDocument(res hasDoc) {
	defaultMeta(res.base())
	switch r := res.(type) {
	case *MeshConfig:
		defaultMesh(&r.Spec)
	case *Service:
		defaultService(r)
	case *Route:
		defaultRoute(r)
	case *Gateway:
		s := &r.Spec
		s.Address = or(s.Address, DefaultGatewayAddress)
		s.Protocol = or(s.Protocol, ProtocolGRPC)
		if len(s.Hosts) == 0 {
			s.Hosts = []string{"*"}
		}
		s.Identity.Namespace = or(s.Identity.Namespace, r.Metadata.Namespace)
		s.Identity.ServiceAccount = or(s.Identity.ServiceAccount, r.Metadata.Name)
	case *Sidecar:
		r.Spec.Mode = or(r.Spec.Mode, SidecarEnvoy)
		in := &r.Spec.Inbound
		in.Address = or(in.Address, DefaultInboundAddress)
		if r.Spec.Mode == SidecarEnvoy {
			in.Port = orU(in.Port, DefaultInboundPort)
		}
		if out := r.Spec.Outbound; out != nil {
			out.Address = or(out.Address, DefaultOutboundAddress)
			out.Port = orU(out.Port, DefaultOutboundPort)
		}
	case *AuthorizationPolicy:
		r.Spec.Action = or(r.Spec.Action, ActionAllow)
	}
}

func defaultMeta(d *doc) { d.Metadata.Namespace = or(d.Metadata.Namespace, DefaultNamespace) }

func defaultMesh(s *MeshSpec) {
	s.TrustDomain = or(s.TrustDomain, DefaultTrustDomain)
	s.MTLS.Mode = or(s.MTLS.Mode, MTLSStrict)
	s.ModelHeader = or(s.ModelHeader, DefaultModelHeader)
	s.CA.Issuer = or(s.CA.Issuer, IssuerBuiltin)
	if s.CA.Issuer == IssuerBuiltin && s.CA.Builtin == nil {
		s.CA.Builtin = &BuiltinCA{}
	}
	if b := s.CA.Builtin; b != nil {
		b.StateDir = or(b.StateDir, DefaultCAStateDir)
		b.RootTTL = orD(b.RootTTL, DefaultRootTTL)
	}
	if v := s.CA.Vault; v != nil {
		v.PKIMount = or(v.PKIMount, DefaultPKIMount)
		v.Mode = or(v.Mode, VaultIssue)
		a := &v.Auth
		a.Mount = or(a.Mount, a.Method)
		switch a.Method {
		case AuthToken:
			if a.Token.IsZero() {
				a.Token.Env = DefaultVaultTokenEnv
			}
		case AuthKubernetes:
			if a.JWT.IsZero() {
				a.JWT.File = DefaultKubernetesJWT
			}
		}
	}
	s.Certificates.TTL = orD(s.Certificates.TTL, DefaultCertTTL)
	if s.Certificates.RotateAt == 0 {
		s.Certificates.RotateAt = DefaultRotateAt
	}
	if t := s.Tracing; t != nil && t.SamplingPercentage == 0 {
		t.SamplingPercentage = DefaultSamplingPercent
	}
	for _, f := range []struct {
		w    *WasmModule
		name string
	}{{&s.Filters.Fanout, "fanout"}, {&s.Filters.SLO, "slo"}} {
		if f.w.Remote == nil {
			f.w.Path = or(f.w.Path, DefaultWasmDir+f.name+".wasm")
		}
	}
}

func defaultService(s *Service) {
	sp := &s.Spec
	sp.Protocol = or(sp.Protocol, ProtocolGRPC)
	sp.Identity.Namespace = or(sp.Identity.Namespace, s.Metadata.Namespace)
	sp.Identity.ServiceAccount = or(sp.Identity.ServiceAccount, s.Metadata.Name)
	sp.ConnectTimeout = orD(sp.ConnectTimeout, DefaultConnectTimeout)
	if h := sp.HealthCheck; h != nil {
		h.Interval = orD(h.Interval, DefaultHealthInterval)
		h.Timeout = orD(h.Timeout, DefaultHealthTimeout)
		h.HealthyThreshold = orU(h.HealthyThreshold, 1)
		h.UnhealthyThreshold = orU(h.UnhealthyThreshold, 3)
		if sp.Protocol == ProtocolHTTP {
			h.Path = or(h.Path, DefaultHealthPath)
		}
	}
	for i := range sp.Versions {
		for j := range sp.Versions[i].Endpoints {
			defaultEndpoint(&sp.Versions[i].Endpoints[j])
		}
	}
}

func defaultEndpoint(e *Endpoint) {
	e.Weight = orU(e.Weight, 1)
	e.Region = or(e.Region, DefaultRegion)
}

// defaultRoute fills the route's own defaults.
func defaultRoute(r *Route) {
	sp := &r.Spec
	sp.Target = or(sp.Target, r.Metadata.Name)
	// Destinations naming no service go to the route's: that reads the
	// route alone, so it is done once here rather than on every load
	// (where it would copy every split, see defaultRouteRefs).
	ownService(sp.Service, sp.Split)
	for i := range sp.Rules {
		ownService(sp.Service, sp.Rules[i].Split)
	}
	if sh := sp.Shadow; sh != nil {
		sh.Service = or(sh.Service, sp.Service)
	}
	if e := sp.Ensemble; e != nil {
		for i := range e.Members {
			e.Members[i].Service = or(e.Members[i].Service, sp.Service)
		}
	}
	if sh := sp.Shadow; sh != nil && sh.Percentage == 0 {
		sh.Percentage = 100
	}
	if e := sp.Ensemble; e != nil {
		e.Mode = or(e.Mode, ModeParallel)
		if e.Mode == ModeParallel {
			e.Strategy = or(e.Strategy, StrategyMean)
		}
		e.Timeout = orD(e.Timeout, DefaultEnsembleTimeout)
		if e.Quorum == 0 {
			e.Quorum = uint32(len(e.Members))
		}
		for i := range e.Members {
			mem := &e.Members[i]
			mem.Model = or(mem.Model, sp.Match.Model)
			if mem.Weight == 0 {
				mem.Weight = 1
			}
		}
	}
	if s := sp.SLO; s != nil {
		s.Window = orD(s.Window, DefaultSLOWindow)
		if len(s.BurnWindows) == 0 {
			s.BurnWindows = DefaultBurnWindows()
		}
	}
	if e := sp.Ensemble; e != nil {
		e.Weights = or(e.Weights, WeightsStatic)
		if e.Weights == WeightsAdaptive && e.Adaptive == nil {
			e.Adaptive = &Adaptive{}
		}
		if a := e.Adaptive; a != nil {
			if a.MinWeight == 0 {
				a.MinWeight = DefaultAdaptiveMin
			}
			if a.MaxWeight == 0 {
				a.MaxWeight = DefaultAdaptiveMax
			}
			a.Interval = orD(a.Interval, DefaultAdaptiveEvery)
			if a.Smoothing == 0 {
				a.Smoothing = DefaultSmoothing
			}
		}
	}
	if ro := sp.Rollout; ro != nil {
		defaultRollout(ro, sp.SLO)
	}
	if rt := sp.Retries; rt != nil {
		rt.Attempts = orU(rt.Attempts, DefaultRetryAttempts)
		if len(rt.On) == 0 {
			rt.On = DefaultRetryOn()
		}
	}
}

// defaultRollout fills a rollout's pace and the thresholds its route's
// SLO (already defaulted) implies.
func defaultRollout(ro *Rollout, slo *SLO) {
	if len(ro.Steps) == 0 {
		ro.Steps = DefaultRolloutSteps()
	}
	ro.StepInterval = orD(ro.StepInterval, DefaultStepInterval)
	ro.MinRequests = orU(ro.MinRequests, DefaultMinRequests)
	a := &ro.Analysis
	if a.MaxErrorRate == 0 {
		a.MaxErrorRate = DefaultMaxErrorRate
		if b := ErrorBudget(slo); b > 0 {
			// Rounded: 100 - 99.9 is 0.0999... in binary.
			a.MaxErrorRate = math.Round(b*100*1e9) / 1e9
		}
	}
	if slo == nil {
		return
	}
	if len(a.Latency) == 0 {
		a.Latency = slo.Latency
	}
	if ErrorBudget(slo) > 0 && len(slo.BurnWindows) > 0 {
		if a.FastBurnRate == 0 {
			a.FastBurnRate = slo.BurnWindows[0].BurnRate
		}
		if a.SlowBurnRate == 0 {
			// Never above the fast limit, which the user may have lowered.
			a.SlowBurnRate = min(slo.BurnWindows[min(1, len(slo.BurnWindows)-1)].BurnRate, a.FastBurnRate)
		}
	}
}

// ownService fills the service of the destinations that name none.
func ownService(service string, split []Destination) {
	for i := range split {
		split[i].Service = or(split[i].Service, service)
	}
}

// defaultRouteRefs fills the route's defaults that name services: its
// only version, the service of destinations, the protocol of a model match.
// r is the Mesh's own copy of the route, but its slices and pointers are
// shared with the Loader's cache and with earlier Meshes (clone.go): each
// is copied before its first change, and only if it changes.
func defaultRouteRefs(ss *serviceCursor, r *Route) {
	sp := &r.Spec
	if len(sp.Split) == 0 && sp.Ensemble == nil {
		if s := ss.find(sp.Service); s != nil && len(s.Spec.Versions) == 1 {
			sp.Split = []Destination{{Service: sp.Service, Version: s.Spec.Versions[0].Name, Weight: 100}}
		}
	}
	sp.Split, _ = defaultSplit(ss, sp.Service, sp.Split)
	if sp.Match.Model != "" && sp.Match.Protocol == "" {
		sp.Match.Protocol = matchProtocol(ss, sp)
	}
	rulesCopied := false
	for i := range sp.Rules {
		split, changed := defaultSplit(ss, sp.Service, sp.Rules[i].Split)
		if !changed {
			continue
		}
		if !rulesCopied {
			sp.Rules, rulesCopied = slices.Clone(sp.Rules), true
		}
		sp.Rules[i].Split = split
	}
	if sh := sp.Shadow; sh != nil {
		if s, v := defaultRef(ss, sp.Service, sh.Service, sh.Version); s != sh.Service || v != sh.Version {
			c := *sh
			c.Service, c.Version = s, v
			sp.Shadow = &c
		}
	}
	if e := sp.Ensemble; e != nil {
		var members []Member // e.Members until a member changes
		for i, mem := range e.Members {
			s, v := defaultRef(ss, sp.Service, mem.Service, mem.Version)
			if s == mem.Service && v == mem.Version {
				continue
			}
			if members == nil {
				members = slices.Clone(e.Members)
			}
			members[i].Service, members[i].Version = s, v
		}
		if members != nil {
			c := *e
			c.Members = members
			sp.Ensemble = &c
		}
	}
}

// matchProtocol is the form a model match takes by default: the protocol
// of the route's destination service, since an inference server serves gRPC
// and REST on different ports (and so different clusters).
func matchProtocol(ss *serviceCursor, sp *RouteSpec) string {
	service := sp.Service
	switch {
	case service != "":
	case len(sp.Split) > 0:
		service = sp.Split[0].Service
	case sp.Ensemble != nil && len(sp.Ensemble.Members) > 0:
		service = sp.Ensemble.Members[0].Service
	}
	s := ss.find(service)
	if s != nil && s.Spec.Protocol == ProtocolHTTP {
		return MatchHTTP
	}
	if s != nil {
		return MatchGRPC
	}
	return MatchAny
}

// defaultSplit returns split with its references filled, a copy of it if
// that changed any (changed true).
func defaultSplit(ss *serviceCursor, service string, split []Destination) (out []Destination, changed bool) {
	for i, d := range split {
		s, v := defaultRef(ss, service, d.Service, d.Version)
		if s == d.Service && v == d.Version {
			continue
		}
		if !changed {
			split, changed = slices.Clone(split), true
		}
		split[i].Service, split[i].Version = s, v
	}
	return split, changed
}

// defaultRef fills a service reference: the route's service, and the
// service's only version.
func defaultRef(ss *serviceCursor, routeService, service, version string) (string, string) {
	service = or(service, routeService)
	if version == "" {
		if s := ss.find(service); s != nil && len(s.Spec.Versions) == 1 {
			version = s.Spec.Versions[0].Name
		}
	}
	return service, version
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func orU(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}

func orD(v, def Duration) Duration {
	if v == 0 {
		return def
	}
	return v
}
