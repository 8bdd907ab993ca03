package model_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

func load(t testing.TB, paths ...string) *policy.Mesh {
	t.Helper()
	pm, err := policy.Load(context.Background(), paths...)
	if err != nil {
		t.Fatal(err)
	}
	return pm
}

// fakeSecrets returns placeholder TLS material for every secret pm needs.
func fakeSecrets(pm *policy.Mesh) []model.Secret {
	var out []model.Secret
	for _, n := range model.RequiredSecrets(pm) {
		if n == model.TrustBundleSecret {
			out = append(out, model.Secret{Name: n, TrustBundle: []byte("bundle")})
		} else {
			out = append(out, model.Secret{Name: n, Certificate: &model.Certificate{ChainPEM: []byte("c"), KeyPEM: []byte("k")}})
		}
	}
	return out
}

func build(t testing.TB, pm *policy.Mesh) *model.Mesh {
	t.Helper()
	m, err := model.Build(pm, model.BuildOptions{Secrets: fakeSecrets(pm)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func listener(t *testing.T, m *model.Mesh, group, name string) *model.Listener {
	t.Helper()
	g := m.Group(group)
	if g == nil {
		t.Fatalf("no group %q", group)
	}
	for i := range g.Listeners {
		if g.Listeners[i].Name == name {
			return &g.Listeners[i]
		}
	}
	t.Fatalf("group %q has no listener %q", group, name)
	return nil
}

func routeNamed(t *testing.T, l *model.Listener, name string) *model.Route {
	t.Helper()
	for _, vh := range l.Routes.VirtualHosts {
		for i := range vh.Routes {
			if vh.Routes[i].Name == name {
				return &vh.Routes[i]
			}
		}
	}
	t.Fatalf("listener %q has no route %q", l.Name, name)
	return nil
}

func routeNames(l *model.Listener) []string {
	var out []string
	for _, vh := range l.Routes.VirtualHosts {
		for _, r := range vh.Routes {
			out = append(out, r.Name)
		}
	}
	return out
}

func TestBuildDemoMesh(t *testing.T) {
	m := build(t, load(t, "../../examples/mesh.yaml"))

	var groups []string
	for _, g := range m.Groups {
		groups = append(groups, g.Name)
	}
	if want := []string{"gateway-edge", "proxyless", "sidecar-churn"}; !reflect.DeepEqual(groups, want) {
		t.Fatalf("groups %v, want %v", groups, want)
	}
	edge := listener(t, m, "gateway-edge", "edge")
	if edge.Port != 8080 || edge.Kind != model.ListenerGateway || edge.Protocol != model.ProtocolGRPC {
		t.Errorf("edge listener %+v", edge)
	}
	// Routes keep the gateway's order; rules come before their route.
	if want := []string{"fraud", "fraud-ensemble", "churn.try-v2", "churn", "recommendations"}; !reflect.DeepEqual(routeNames(edge), want) {
		t.Errorf("edge routes %v, want %v", routeNames(edge), want)
	}
	fraud := routeNamed(t, edge, "fraud")
	wantMatch := model.RouteMatch{Prefix: model.OIPModelMethodPrefix, GRPC: true, Headers: []model.HeaderMatch{{Name: "x-maestro-model", Exact: "fraud"}}}
	if !reflect.DeepEqual(fraud.Match, wantMatch) {
		t.Errorf("fraud match %+v", fraud.Match)
	}
	if want := []model.WeightedCluster{{Name: "fraud.v1", Weight: 90}, {Name: "fraud.v2", Weight: 10}}; !reflect.DeepEqual(fraud.Action.Clusters, want) {
		t.Errorf("fraud split %+v", fraud.Action.Clusters)
	}
	if want := []model.Mirror{{Cluster: "fraud.logistic", Percent: 20, Compare: true, Model: "fraud-logistic"}}; !reflect.DeepEqual(fraud.Action.Mirrors, want) {
		t.Errorf("fraud shadow %+v", fraud.Action.Mirrors)
	}
	if a := fraud.Action; a.Timeout != 2*time.Second || a.Retry == nil || a.Retry.Attempts != 2 || a.Retry.PerTryTimeout != 500*time.Millisecond {
		t.Errorf("fraud timeout/retry %+v %+v", a.Timeout, a.Retry)
	}
	if s := fraud.Action.SLO; s == nil || s.Availability != 0.999 || len(s.Latency) != 1 || s.Latency[0].Threshold != 250*time.Millisecond || len(s.Windows) != 3 {
		t.Errorf("fraud slo %+v", s)
	}
	ens := routeNamed(t, edge, "fraud-ensemble").Action
	if f := ens.Fanout; f == nil || f.Strategy != "weighted_mean" || f.Quorum != 2 || f.Timeout != 300*time.Millisecond || len(f.Members) != 3 {
		t.Fatalf("ensemble %+v", ens.Fanout)
	}
	if want := (model.FanoutMember{Cluster: "fraud.logistic", Model: "fraud-logistic", Weight: 1}); ens.Fanout.Members[0] != want {
		t.Errorf("ensemble members (sorted by cluster) %+v", ens.Fanout.Members)
	}
	if want := []model.WeightedCluster{{Name: "fraud.v1", Weight: 100}}; !reflect.DeepEqual(ens.Clusters, want) {
		t.Errorf("an ensemble without a split goes on to its first member: %+v", ens.Clusters)
	}
	if len(edge.Filters) != 2 || edge.Filters[0].Kind != model.FilterFanout || edge.Filters[0].Code.Path != "build/wasm/fanout.wasm" ||
		edge.Filters[1].Name != "edge.slo" {
		t.Errorf("edge filters %+v", edge.Filters)
	}
	// Proxyless: one API listener per gRPC route, no filters or mirrors.
	px := listener(t, m, "proxyless", "fraud")
	pr := routeNamed(t, px, "fraud")
	if px.Kind != model.ListenerAPI || pr.Match.Prefix != "/" || pr.Action.Mirrors != nil || pr.Action.Fanout != nil || pr.Action.SLO != nil {
		t.Errorf("proxyless fraud %+v", px)
	}
	if got := routeNames(listener(t, m, "proxyless", "churn")); !reflect.DeepEqual(got, []string{"churn.try-v2", "churn"}) {
		t.Errorf("proxyless churn routes %v", got)
	}
	// The sidecar: inbound to the local instance, outbound routes.
	in := listener(t, m, "sidecar-churn", "churn.inbound")
	if in.TLS != nil || in.Port != 15006 || routeNamed(t, in, "inbound").Action.Clusters[0].Name != "churn|local" {
		t.Errorf("PERMISSIVE inbound %+v", in)
	}
	if c := m.Cluster("churn|local"); c == nil || c.Localities[0].Endpoints[0] != (model.Endpoint{Address: "127.0.0.1", Port: 9004}) {
		t.Errorf("local cluster %+v", c)
	}
	if g := m.Group("sidecar-churn"); !reflect.DeepEqual(g.Nodes, model.NodeSelector{Role: model.RoleSidecar, Service: "churn"}) {
		t.Errorf("sidecar selector %+v", g.Nodes)
	}
	c := m.Cluster("fraud.v1")
	if c == nil || c.Identity != "spiffe://maestro.local/ns/ml/sa/fraud" || c.HealthCheck.Interval != 5*time.Second ||
		c.Limits.MaxRequests != 4096 || c.Outlier.Consecutive5xx != 5 || c.TLS != nil ||
		!reflect.DeepEqual(c.Localities, []model.Locality{{Region: "local", Weight: 1, Endpoints: []model.Endpoint{{Address: "127.0.0.1", Port: 9001, Weight: 1}}}}) {
		t.Errorf("fraud.v1 cluster %+v", c)
	}
	if m.Tracing == nil || m.Tracing.Cluster != "otel-collector.v1" || m.Tracing.SamplePercent != 10 {
		t.Errorf("tracing %+v", m.Tracing)
	}
}

func TestBuildStrictMTLSAndAuthorization(t *testing.T) {
	pm := load(t, "../../examples/policies/mtls-authorization.yaml")
	if _, err := model.Build(pm, model.BuildOptions{}); !errors.Is(err, model.ErrMissingSecret) {
		t.Fatalf("without secrets: got %v, want ErrMissingSecret", err)
	}
	td := "spiffe://prod.example.com/ns/"
	wantSecrets := []string{td + "ml/sa/churn", td + "ml/sa/edge-gateway", td + "ml/sa/fraud-sa", model.TrustBundleSecret}
	if got := model.RequiredSecrets(pm); !reflect.DeepEqual(got, wantSecrets) {
		t.Errorf("RequiredSecrets %v, want %v", got, wantSecrets)
	}
	m := build(t, pm)

	in := listener(t, m, "sidecar-fraud", "fraud.inbound")
	if in.TLS == nil || in.TLS.CertSecret != td+"ml/sa/fraud-sa" || !in.TLS.RequireClientCert || in.TLS.TrustSecret != model.TrustBundleSecret {
		t.Errorf("STRICT inbound TLS %+v", in.TLS)
	}
	// The gateway reaches fraud through its own mTLS copy of the cluster.
	edge := listener(t, m, "gateway-edge", "edge")
	gwCluster := routeNamed(t, edge, "fraud").Action.Clusters[0].Name
	if gwCluster != "fraud.v1|ml.edge-gateway" {
		t.Fatalf("gateway uses cluster %q", gwCluster)
	}
	if c := m.Cluster(gwCluster); c.TLS == nil || c.TLS.CertSecret != td+"ml/sa/edge-gateway" ||
		!reflect.DeepEqual(c.TLS.MatchSANs, []string{td + "ml/sa/fraud-sa"}) || len(c.Localities[0].Endpoints) != 2 {
		t.Errorf("mTLS cluster %+v", c)
	}
	out := listener(t, m, "sidecar-churn", "churn.outbound")
	if got := routeNamed(t, out, "fraud").Action.Clusters[0].Name; got != "fraud.v1|ml.churn" {
		t.Errorf("churn's outbound uses %q", got)
	}
	if g := m.Group("sidecar-churn"); !reflect.DeepEqual(g.Nodes.IDs, []string{"churn-0", "churn-1"}) {
		t.Errorf("sidecar node ids %v", g.Nodes.IDs)
	}
	// Proxyless clients get the plain cluster (their TLS is not from SDS).
	if got := routeNamed(t, listener(t, m, "proxyless", "fraud"), "fraud").Action.Clusters[0].Name; got != "fraud.v1" {
		t.Errorf("proxyless uses %q", got)
	}

	az := in.Authorization
	if az == nil || az.Action != model.AuthzAllow {
		t.Fatalf("fraud authorization %+v", az)
	}
	want := []model.AuthzRule{
		{Name: "fraud-callers.edge-infers.model-fraud", Principals: []string{td + "ml/sa/churn", td + "ml/sa/edge-gateway"},
			Prefixes: []string{model.OIPModelMethodPrefix}, Headers: []model.HeaderMatch{{Name: "x-maestro-model", Exact: "fraud"}}},
		{Name: "fraud-callers.edge-infers.model-fraud.rest", Principals: []string{td + "ml/sa/churn", td + "ml/sa/edge-gateway"},
			Paths: []string{"/v2/models/fraud"}, Prefixes: []string{"/v2/models/fraud/"}},
		{Name: "fraud-callers.health", Prefixes: []string{"/grpc.health.v1.Health/", "/v2/health/"}},
	}
	if !reflect.DeepEqual(az.Rules, want) {
		t.Errorf("fraud rules\n got %+v\nwant %+v", az.Rules, want)
	}
	deny := listener(t, m, "sidecar-churn", "churn.inbound").Authorization
	if deny == nil || deny.Action != model.AuthzDeny || len(deny.Rules) != 1 ||
		!reflect.DeepEqual(deny.Rules[0].Principals, []string{td + "batch/sa/reporting"}) || !slices.Equal(deny.Rules[0].Prefixes, []string{model.OIPModelMethodPrefix}) {
		t.Errorf("churn deny %+v", deny)
	}
}

func TestBuildMatchForms(t *testing.T) {
	m := build(t, load(t, "../../examples/policies/header-routing.yaml"))
	edge := listener(t, m, "gateway-edge", "edge")
	for name, want := range map[string]model.RouteMatch{
		"churn.beta": {Prefix: model.OIPModelMethodPrefix, GRPC: true, Headers: []model.HeaderMatch{
			{Name: "x-maestro-model", Exact: "churn"}, {Name: "x-user-tier", Exact: "beta"}}},
		"churn.canary-cookie": {Prefix: model.OIPModelMethodPrefix, GRPC: true, Headers: []model.HeaderMatch{
			{Name: "x-maestro-model", Exact: "churn"}, {Name: "cookie", Regex: ".*canary=1.*"}, {Name: "x-no-canary", Present: true, Invert: true}}},
		"churn-rest":  {Prefix: "/v2/models/churn/", Headers: []model.HeaderMatch{{Name: "content-type", Prefix: "application/json"}}},
		"churn-ready": {Path: "/v2/health/ready"},
	} {
		if got := routeNamed(t, edge, name).Match; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: match %+v, want %+v", name, got, want)
		}
	}
	if got := routeNames(edge); !reflect.DeepEqual(got, []string{"churn.beta", "churn.canary-cookie", "churn", "churn-rest", "churn-ready"}) {
		t.Errorf("order %v", got)
	}
	// http-only routes get no proxyless API listener.
	for _, l := range m.Group("proxyless").Listeners {
		if strings.HasPrefix(l.Name, "churn-re") {
			t.Errorf("http route %q got an API listener", l.Name)
		}
	}
}

func TestBuildFeatures(t *testing.T) {
	t.Run("sequence", func(t *testing.T) {
		m := build(t, load(t, "../../examples/policies/sequence.yaml"))
		f := routeNamed(t, listener(t, m, "gateway-edge", "edge"), "churn-pipeline").Action.Fanout
		if f == nil || !f.Sequence || f.Members[0].Cluster != "features.v1" || f.Members[1].Model != "churn" || f.Quorum != 2 {
			t.Errorf("sequence %+v (members keep their order)", f)
		}
	})
	t.Run("stacking", func(t *testing.T) {
		m := build(t, load(t, "../../examples/policies/ensemble.yaml"))
		f := routeNamed(t, listener(t, m, "gateway-edge", "edge"), "fraud-stacked").Action.Fanout
		if f.Stacking == nil || !reflect.DeepEqual(f.Stacking.Weights, []float64{1.8, 2.1, 0.7}) || f.Members[0].Cluster != "fraud.v1" {
			t.Errorf("stacking %+v (members keep their order, matching the weights)", f)
		}
	})
	t.Run("fault", func(t *testing.T) {
		m := build(t, load(t, "../../examples/policies/resilience.yaml"))
		a := routeNamed(t, listener(t, m, "gateway-edge", "edge"), "churn").Action
		want := &model.Fault{DelayPercent: 5, Delay: 200 * time.Millisecond, AbortPercent: 1, AbortGRPCStatus: 14}
		if !reflect.DeepEqual(a.Fault, want) || a.Retry.Attempts != 3 || len(a.Retry.On) != 4 {
			t.Errorf("fault %+v retry %+v", a.Fault, a.Retry)
		}
		c := m.Cluster("churn.v1")
		if len(c.Localities) != 2 || c.Localities[1].Zone != "b" || c.Localities[1].Endpoints[0].Weight != 2 || c.ConnectTimeout != 500*time.Millisecond {
			t.Errorf("localities by zone %+v", c)
		}
	})
	t.Run("remote wasm", func(t *testing.T) {
		m := build(t, load(t, "../../examples/policies/remote-wasm.yaml"))
		fs := listener(t, m, "gateway-edge", "edge").Filters
		if len(fs) != 2 || fs[0].Code.URL == "" || fs[0].Code.Cluster != "wasm-store.v1" || len(fs[0].Code.SHA256) != 64 {
			t.Errorf("remote filters %+v", fs)
		}
	})
	t.Run("endpoints file", func(t *testing.T) {
		m := build(t, load(t, "../../examples/policies/endpoints-file.yaml"))
		if c := m.Cluster("fraud.v2"); len(c.Localities) != 2 || c.Localities[0].Endpoints[0].Port != 9002 {
			t.Errorf("endpoints from file %+v", c.Localities)
		}
	})
	t.Run("proxyless target", func(t *testing.T) {
		m := build(t, load(t, "../../examples/policies/proxyless.yaml"))
		l := listener(t, m, "proxyless", "fraud-scoring")
		if l.Routes.VirtualHosts[0].Domains[0] != "fraud-scoring" || len(m.Groups) != 1 {
			t.Errorf("proxyless %+v", l)
		}
	})
}

// TestBuildEveryExample builds every example: the IR's own Validate runs
// inside Build, so this proves each converts to a consistent IR.
func TestBuildEveryExample(t *testing.T) {
	files, _ := filepath.Glob("../../examples/policies/*.yaml")
	files = append(files, "../../examples/mesh.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { build(t, load(t, f)) })
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	a := build(t, load(t, "../../examples/mesh.yaml"))
	b := build(t, load(t, "../../examples/mesh.yaml"))
	if !a.Equal(b) || a.Hash() != b.Hash() {
		t.Error("two builds of one policy differ")
	}
	c := build(t, load(t, "../../examples/policies/canary.yaml"))
	if a.Hash() == c.Hash() {
		t.Error("different policies hash alike")
	}
}

func TestBuildNoPolicy(t *testing.T) {
	if _, err := model.Build(nil, model.BuildOptions{}); err == nil {
		t.Error("nil policy: want an error")
	}
}

// largePolicy writes routes routes over services services of two
// versions each, in one document per object.
func largePolicy(routes, services int) string {
	var b strings.Builder
	for i := 0; i < services; i++ {
		fmt.Fprintf(&b, "---\napiVersion: maestro.dev/v1alpha1\nkind: Service\nmetadata: {name: svc%05d}\nspec:\n  versions:\n"+
			"    - {name: v0, endpoints: [{address: 10.%d.%d.1, port: 9000}, {address: 10.%d.%d.2, port: 9000}]}\n"+
			"    - {name: v1, endpoints: [{address: 10.%d.%d.3, port: 9000}]}\n", i, i/256%256, i%256, i/256%256, i%256, i/256%256, i%256)
	}
	names := make([]string, routes)
	for i := 0; i < routes; i++ {
		names[i] = fmt.Sprintf("model%05d", i)
		fmt.Fprintf(&b, "---\napiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata: {name: %s}\nspec:\n  service: svc%05d\n  match: {model: %s}\n"+
			"  split: [{version: v0, weight: 90}, {version: v1, weight: 10}]\n  timeout: 1s\n", names[i], i%services, names[i])
	}
	fmt.Fprintf(&b, "---\napiVersion: maestro.dev/v1alpha1\nkind: Gateway\nmetadata: {name: edge}\nspec:\n  port: 8080\n  routes: [%s]\n", strings.Join(names, ", "))
	return b.String()
}

// BenchmarkLoadAndBuild10k is the policy half of a full rebuild at the
// issue's scale: 10,000 routes and 20,000 service versions, parsed,
// validated and converted to the IR.
func BenchmarkLoadAndBuild10k(b *testing.B) {
	text := []byte(largePolicy(10000, 10000))
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			if _, err := policy.Parse("large.yaml", text); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/parse")
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1e3/float64(b.N), "cpu-ms/parse")
	})
	pm, err := policy.Parse("large.yaml", text)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("build", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			if _, err := model.Build(pm, model.BuildOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/build")
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1e3/float64(b.N), "cpu-ms/build")
	})
	// The control plane's load asks for the secrets before every Build.
	b.Run("required-secrets", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			model.RequiredSecrets(pm)
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/op")
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1e3/float64(b.N), "cpu-ms/op")
	})
}

// cpuTime is the process's user+system CPU time: on a shared machine it
// measures the work of a benchmark better than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBuildIgnoresDocumentOrder: the same documents in another order and
// split over files give the same IR.
func TestBuildIgnoresDocumentOrder(t *testing.T) {
	data, err := os.ReadFile("../../examples/mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(data), "\n---\n")
	slices.Reverse(docs)
	dir := t.TempDir()
	for i, d := range docs {
		p := filepath.Join(dir, fmt.Sprintf("%02d.yaml", i))
		if err := os.WriteFile(p, []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := build(t, load(t, "../../examples/mesh.yaml"))
	b := build(t, load(t, dir))
	if a.Hash() != b.Hash() || !a.Equal(b) {
		t.Error("reordered documents give a different IR")
	}
}

// FuzzBuild: every policy Load accepts converts to a valid IR. Validation
// in the policy package must catch whatever would break the model's
// invariants (Build runs model.Validate).
func FuzzBuild(f *testing.F) {
	files, _ := filepath.Glob("../../examples/policies/*.yaml")
	files = append(files, "../../examples/mesh.yaml")
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Endpoints files resolve against the examples directory.
		pm, err := policy.Parse("../../examples/policies/fuzz.yaml", data)
		if err != nil {
			return
		}
		if _, err := model.Build(pm, model.BuildOptions{Secrets: fakeSecrets(pm)}); err != nil {
			t.Fatalf("a valid policy does not build: %v", err)
		}
	})
}

func TestBuildProxylessServersAndClients(t *testing.T) {
	pm := load(t, "../../examples/policies/proxyless-mtls.yaml")
	m := build(t, pm)
	td := "spiffe://maestro.local/ns/"
	server := listener(t, m, "proxyless-fraud", model.GRPCServerListenerName("0.0.0.0", 9001))
	if server.Kind != model.ListenerGRPCServer || server.Port != 9001 || server.TLS == nil || !server.TLS.RequireClientCert ||
		server.TLS.CertSecret != td+"ml/sa/fraud" || server.Authorization == nil || len(server.Authorization.Rules) != 2 {
		t.Fatalf("gRPC server listener %+v", server)
	}
	if got := server.Name; got != "grpc/server?xds.resource.listening_address=0.0.0.0:9001" {
		t.Errorf("listener name %q", got)
	}
	if r := routeNamed(t, server, "serve"); len(r.Action.Clusters) != 0 || r.Match.Prefix != "/" {
		t.Errorf("served route %+v", r)
	}
	// The scorer's clients present their identity to fraud.
	client := routeNamed(t, listener(t, m, "proxyless-scorer", "fraud"), "fraud")
	if got := client.Action.Clusters[0].Name; got != "fraud.v1|apps.scorer" {
		t.Fatalf("scorer uses cluster %q", got)
	}
	if c := m.Cluster("fraud.v1|apps.scorer"); c.TLS == nil || c.TLS.CertSecret != td+"apps/sa/scorer" {
		t.Errorf("client TLS %+v", c.TLS)
	}
	if g := m.Group("proxyless-scorer"); g.Nodes.Role != model.RoleProxyless || g.Nodes.Service != "scorer" || len(g.Listeners) != 1 {
		t.Errorf("client-only group %+v", g)
	}
	// Anonymous proxyless clients keep plain clusters; scorer serves nothing,
	// so calls to it stay plaintext.
	if got := routeNamed(t, listener(t, m, "proxyless", "fraud"), "fraud").Action.Clusters[0].Name; got != "fraud.v1" {
		t.Errorf("anonymous client uses %q", got)
	}
	want := []string{td + "apps/sa/scorer", td + "ml/sa/fraud", model.TrustBundleSecret}
	if got := model.RequiredSecrets(pm); !reflect.DeepEqual(got, want) {
		t.Errorf("RequiredSecrets %v, want %v", got, want)
	}
}

// TestBuildLargeMeshInAnyRouteOrder: Build finds routes and services near
// the previous hit first; a gateway listing its routes backwards (each
// lookup far from the last) must give the same routes, reversed in pairs.
func TestBuildLargeMeshInAnyRouteOrder(t *testing.T) {
	text := largePolicy(300, 200)
	forward, err := policy.Parse("large.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndex(text, "routes: [")
	names := strings.Split(strings.TrimSuffix(text[i+len("routes: ["):], "]\n"), ", ")
	slices.Reverse(names)
	backward, err := policy.Parse("large.yaml", []byte(text[:i]+"routes: ["+strings.Join(names, ", ")+"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := build(t, forward), build(t, backward)
	if !slices.EqualFunc(a.Clusters, b.Clusters, func(x, y model.Cluster) bool { return x.Equal(&y) }) {
		t.Error("clusters differ")
	}
	if pa, pb := a.Group(model.ProxylessGroup), b.Group(model.ProxylessGroup); pa == nil || !pa.Equal(pb) {
		t.Error("proxyless groups differ")
	}
	ra := a.Group("gateway-edge").Listeners[0].Routes.VirtualHosts[0].Routes
	rb := b.Group("gateway-edge").Listeners[0].Routes.VirtualHosts[0].Routes
	if len(ra) == 0 || len(ra)%300 != 0 || len(rb) != len(ra) {
		t.Fatalf("%d and %d gateway routes, want the same multiple of 300", len(ra), len(rb))
	}
	per := len(ra) / 300 // IR routes per policy route
	for j := 0; j < len(ra); j += per {
		k := len(rb) - per - j
		if !reflect.DeepEqual(ra[j:j+per], rb[k:k+per]) {
			t.Fatalf("route %q: forward %+v, backward %+v", ra[j].Name, ra[j:j+per], rb[k:k+per])
		}
	}
}
