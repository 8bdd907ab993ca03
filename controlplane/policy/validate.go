package policy

import (
	"context"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/maestro-ml/maestro/internal/parallel"
)

// validator checks a defaulted Mesh and records every problem.
type validator struct {
	m *Mesh
	e *errs
	// kind and d are the document being checked.
	kind string
	d    *doc
	// local runs the checks that read the document alone, cross those
	// that read other documents or fields defaulted from them. A
	// document whose own checks passed when it was decoded (doc.checked)
	// gets only the cross ones: a reload re-checks what may have changed.
	local, cross bool
	// services finds the services documents name.
	services *serviceCursor
}

// lookup is v.m.Service(name).
func (v *validator) lookup(name string) *Service { return v.services.find(name) }

// serviceCursor is m.Service for a pass over the documents: it tries the
// service found last and the one after it before the index. A route's
// references mostly name one service, and policies tend to list routes in
// the order of their services, while each lookup in the index of a large
// mesh is a cache miss.
type serviceCursor struct {
	m    *Mesh
	next int
}

func (c *serviceCursor) find(name string) *Service {
	ss := c.m.Services
	if i := c.next - 1; i >= 0 && i < len(ss) && ss[i].Metadata.Name == name {
		return ss[i]
	}
	if i := c.next; i < len(ss) && ss[i].Metadata.Name == name {
		c.next++
		return ss[i]
	}
	if c.m.services == nil {
		return c.m.Service(name)
	}
	i, ok := c.m.services[name]
	if !ok {
		return nil
	}
	c.next = int(i) + 1
	return ss[i]
}

func (v *validator) bad(field, format string, args ...any) {
	v.e.in(v.kind, v.d, field, format, args...)
}

// badAt is bad for a path formatted only now that it is needed.
func (v *validator) badAt(field fieldPath, format string, args ...any) {
	v.e.in(v.kind, v.d, field.String(), format, args...)
}

func (v *validator) on(kind string, d *doc) *validator {
	return &validator{m: v.m, e: v.e, kind: kind, d: d, local: !d.checked, cross: true, services: v.services}
}

// checkDocument runs the own checks of a decoded (and own-defaulted)
// document and reports whether they all passed; the Loader caches the
// answer with the document (doc.checked). Only the kinds of which a large
// mesh has many are checked ahead.
func checkDocument(res hasDoc) bool {
	v := &validator{e: &errs{}, d: res.base(), local: true}
	switch r := res.(type) {
	case *Service:
		v.kind = KindService
		v.service(r)
	case *Route:
		v.kind = KindRoute
		v.route(r)
	case *Gateway:
		v.kind = KindGateway
		v.gateway(r, nil)
	default:
		return false
	}
	return len(v.e.list) == 0
}

// validate reports every problem of m: enums, ranges, references,
// conflicts. Defaults are already applied. It fails only when ctx is done.
func validate(ctx context.Context, m *Mesh, e *errs) error {
	v := &validator{m: m, e: e, services: &serviceCursor{m: m}}
	c := v.on(KindMesh, &m.Config.doc)
	c.mesh(&m.Config.Spec)
	for _, s := range m.Services {
		// Every check of a service is its own.
		if c := v.on(KindService, &s.doc); c.local {
			c.service(s)
		}
	}
	// Targets default to the route names, which are sorted: then none
	// repeats and no map of them is needed, and each route is checked on
	// its own, so the routes are checked in spans side by side, each
	// with its own list of problems, joined in route order.
	if targetsIncrease(m.Routes) {
		parts := parallel.Parts(len(m.Routes), splitAbove)
		lists := make([]errs, parts)
		err := parallel.Spans(ctx, len(m.Routes), parts, func(part, lo, hi int) error {
			hv := &validator{m: m, e: &lists[part], services: &serviceCursor{m: m}}
			for _, r := range m.Routes[lo:hi] {
				hv.on(KindRoute, &r.doc).route(r)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, l := range lists {
			e.list = append(e.list, l.list...)
		}
	} else {
		targets := make(map[string]*Route, len(m.Routes))
		for _, r := range m.Routes {
			c := v.on(KindRoute, &r.doc)
			c.route(r)
			if other, dup := targets[r.Spec.Target]; dup {
				c.bad("spec.target", "proxyless target %q is also Route %q's (%s)", r.Spec.Target, other.Metadata.Name, other.Source)
			}
			targets[r.Spec.Target] = r
		}
	}
	for i, g := range m.Gateways {
		c := v.on(KindGateway, &g.doc)
		c.gateway(g, m.Gateways[:i])
	}
	for i, s := range m.Sidecars {
		c := v.on(KindSidecar, &s.doc)
		c.sidecar(s, m.Sidecars[:i])
	}
	for i, a := range m.Authorizations {
		c := v.on(KindAuthorization, &a.doc)
		c.authorization(a, m.Authorizations[:i])
	}
	return nil
}

// targetsIncrease reports whether each route's target sorts after the one
// before it, so no two are the same.
func targetsIncrease(rs []*Route) bool {
	for i := 1; i < len(rs); i++ {
		if rs[i-1].Spec.Target >= rs[i].Spec.Target {
			return false
		}
	}
	return true
}

var (
	trustDomainRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)
	headerNameRE  = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_|~-]+$`)
	hexSHA256RE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func (v *validator) mesh(s *MeshSpec) {
	if !trustDomainRE.MatchString(s.TrustDomain) {
		v.bad("spec.trustDomain", "trust domain %q must be lower-case letters, digits, '.' and '-'", s.TrustDomain)
	}
	if !headerNameRE.MatchString(s.ModelHeader) {
		v.bad("spec.modelHeader", "%q is not a lower-case header name", s.ModelHeader)
	}
	if s.CA.Issuer == IssuerVault {
		if s.CA.Vault == nil {
			v.bad("spec.ca.vault", "issuer vault needs the vault settings")
		} else {
			v.vault(s.CA.Vault)
		}
	}
	if s.CA.Builtin != nil && s.CA.Builtin.RootTTL.D() < s.Certificates.TTL.D() {
		v.bad("spec.ca.builtin.rootTtl", "root lifetime %v is shorter than the certificate lifetime %v", s.CA.Builtin.RootTTL, s.Certificates.TTL)
	}
	if r := s.Certificates.RotateAt; !(r > 0 && r < 1) {
		v.bad("spec.certificates.rotateAt", "%v must be between 0 and 1 (exclusive): the share of the lifetime after which to re-issue", r)
	}
	if t := s.Tracing; t != nil {
		v.serviceRef(pathOf("spec.tracing.collector"), t.Collector.Service, t.Collector.Version)
		v.percent("spec.tracing.samplingPercentage", t.SamplingPercentage)
	}
	v.wasm("spec.filters.fanout", &s.Filters.Fanout)
	v.wasm("spec.filters.slo", &s.Filters.SLO)
}

func (v *validator) vault(c *VaultCA) {
	u, err := url.Parse(c.Address)
	if c.Address == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.bad("spec.ca.vault.address", "address %q must be an http(s) URL", c.Address)
	}
	if c.Role == "" {
		v.bad("spec.ca.vault.role", "the PKI role is required")
	}
	a := &c.Auth
	switch a.Method {
	case "":
		v.bad("spec.ca.vault.auth.method", "auth method is required: token, approle or kubernetes")
	case AuthAppRole:
		if a.RoleID.IsZero() || a.SecretID.IsZero() {
			v.bad("spec.ca.vault.auth", "approle needs roleId and secretId (each from env or file)")
		}
	case AuthKubernetes:
		if a.Role == "" {
			v.bad("spec.ca.vault.auth.role", "kubernetes auth needs the Vault role")
		}
	}
	for name, r := range map[string]SecretRef{"token": a.Token, "roleId": a.RoleID, "secretId": a.SecretID, "jwt": a.JWT} {
		if r.Env != "" && r.File != "" {
			v.bad("spec.ca.vault.auth."+name, "give env or file, not both")
		}
	}
}

func (v *validator) wasm(field string, w *WasmModule) {
	r := w.Remote
	if r == nil {
		return
	}
	if w.Path != "" {
		v.bad(field, "give path or remote, not both")
	}
	if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.bad(field+".remote.url", "url %q must be an http(s) URL", r.URL)
	}
	if !hexSHA256RE.MatchString(r.SHA256) {
		v.bad(field+".remote.sha256", "sha256 must be 64 lower-case hex digits")
	}
	v.serviceRef(pathOf(field).dot("remote"), r.Service, r.Version)
}

// serviceRef checks service (and version, when the service has several)
// name a Service version of the mesh.
func (v *validator) serviceRef(field fieldPath, service, version string) {
	if service == "" {
		v.badAt(field.dot("service"), "service is required")
		return
	}
	s := v.lookup(service)
	if s == nil {
		v.badAt(field.dot("service"), "unknown Service %q%s", service, v.suggestService(service))
		return
	}
	if version == "" {
		v.badAt(field.dot("version"), "Service %q has %d versions: name one", service, len(s.Spec.Versions))
		return
	}
	if !slices.ContainsFunc(s.Spec.Versions, func(x Version) bool { return x.Name == version }) {
		v.badAt(field.dot("version"), "Service %q has no version %q%s", service, version, suggest(version, versionNames(s)))
	}
}

func (v *validator) percent(field string, p float64) {
	if p < 0 || p > 100 {
		v.bad(field, "%v is outside 0..100", p)
	}
}

func (v *validator) service(s *Service) {
	sp := &s.Spec
	v.dnsLabel("spec.identity.namespace", sp.Identity.Namespace)
	v.dnsLabel("spec.identity.serviceAccount", sp.Identity.ServiceAccount)
	if len(sp.Versions) == 0 {
		v.bad("spec.versions", "at least one version is required")
	}
	seen := map[string]int{}
	for i, ver := range sp.Versions {
		f := elem("spec.versions", i)
		if !validName(ver.Name) {
			v.badAt(f.dot("name"), "version name %q must be a DNS label", ver.Name)
		} else if j, dup := seen[ver.Name]; dup {
			v.badAt(f.dot("name"), "version %q is also spec.versions[%d]", ver.Name, j)
		}
		seen[ver.Name] = i
		if (len(ver.Endpoints) == 0) == (ver.EndpointsFile == "") {
			v.badAt(f, "give endpoints or endpointsFile (exactly one)")
		}
		validateEndpoints(v.e, v.d, v.kind, f.dot("endpoints"), ver.Endpoints)
	}
	if h := sp.HealthCheck; h != nil {
		if h.Timeout > h.Interval {
			v.bad("spec.healthCheck.timeout", "timeout %v is longer than the interval %v", h.Timeout, h.Interval)
		}
		if h.Path != "" && (sp.Protocol != ProtocolHTTP || !strings.HasPrefix(h.Path, "/")) {
			v.bad("spec.healthCheck.path", "path %q is for http services and must start with /", h.Path)
		}
		if h.GRPCService != "" && sp.Protocol != ProtocolGRPC {
			v.bad("spec.healthCheck.grpcService", "grpcService is for grpc services")
		}
	}
	if o := sp.OutlierDetection; o != nil && o.MaxEjectionPercent > 100 {
		v.bad("spec.outlierDetection.maxEjectionPercent", "%d is above 100", o.MaxEjectionPercent)
	}
}

func (v *validator) dnsLabel(field, s string) {
	if !validName(s) {
		v.bad(field, "%q must be a DNS label", s)
	}
}

// validateEndpoints checks addresses and ports; kind is "" for files.
func validateEndpoints(e *errs, d *doc, kind string, field fieldPath, eps []Endpoint) {
	for i, ep := range eps {
		f := field.at(i)
		if ep.Address == "" || strings.ContainsAny(ep.Address, " /") {
			e.in(kind, d, f.dot("address").String(), "address %q must be an IP address or host name", ep.Address)
		}
		if ep.Port == 0 || ep.Port > 65535 {
			e.in(kind, d, f.dot("port").String(), "port %d is outside 1..65535", ep.Port)
		}
	}
}

// splitAbove is the number of routes from which a pass over them
// (cross-document defaults, validation) runs in spans side by side
// (internal/parallel): below it, starting a goroutine costs more than it
// saves.
const splitAbove = 512
