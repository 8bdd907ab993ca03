package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/policies/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../examples/mesh.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(context.Background(), f); err != nil {
				t.Fatalf("example does not load:\n%v", err)
			}
		})
	}
}

func TestLoadDirectoryMerges(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a/base.yaml", base)
	write(t, dir, "b/routes.yml", route("extra", "{service: fraud, match: {model: extra}, split: [{version: v1, weight: 100}]}"))
	write(t, dir, "b/eps/fraud.yaml", "apiVersion: maestro.dev/v1alpha1\nkind: Endpoints\nendpoints: [{address: 10.1.1.1, port: 9}]\n")
	write(t, dir, "c/more.json", `{"apiVersion": "maestro.dev/v1alpha1", "kind": "Service", "metadata": {"name": "json"},
	  "spec": {"versions": [{"name": "v1", "endpointsFile": "../b/eps/fraud.yaml"}]}}`)
	write(t, dir, "README.md", "not a policy")
	m, err := Load(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range m.Services {
		names = append(names, s.Metadata.Name)
	}
	if want := []string{"churn", "fraud", "json"}; !reflect.DeepEqual(names, want) {
		t.Errorf("services %v, want %v", names, want)
	}
	if m.Route("fraud") == nil || m.Route("extra") == nil || len(m.Sidecars) != 1 {
		t.Errorf("routes %d sidecars %d, want the route and the sidecar", len(m.Routes), len(m.Sidecars))
	}
	eps := m.Service("json").Spec.Versions[0].Endpoints
	if want := []Endpoint{{Address: "10.1.1.1", Port: 9, Weight: 1, Region: DefaultRegion}}; !reflect.DeepEqual(eps, want) {
		t.Errorf("endpoints from file %+v, want %+v", eps, want)
	}
	files := m.Files()
	if len(files) != 4 || !strings.HasSuffix(files[1], filepath.Join("b", "eps", "fraud.yaml")) {
		t.Errorf("files %v: want the three policies and the endpoints file", files)
	}
}

func TestLoadConflictNamesBothFiles(t *testing.T) {
	dir := t.TempDir()
	a := write(t, dir, "a.yaml", base)
	b := write(t, dir, "b.yaml", "# another team\n"+svc("churn", "{"+v1+"}"))
	_, err := Load(context.Background(), a, b)
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 {
		t.Fatalf("got %v, want one error", err)
	}
	e := list[0]
	if e.File != b || e.Line != 5 || e.Field != "metadata.name" || !strings.Contains(e.Message, a+":9:1") {
		t.Errorf("got %q (line %d), want it at %s:5 naming %s:9:1", e, e.Line, b, a)
	}
}

func TestErrorPositionAndFormat(t *testing.T) {
	_, err := Parse("p.yaml", []byte(base+route("r", "{service: fraud, split: [{version: v1, weight: 100}], timeout: soon}")))
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 {
		t.Fatalf("got %v, want one error", err)
	}
	want := `p.yaml:30:70: Route "r": spec.timeout: invalid duration "soon": want e.g. 250ms, 1h30m or 30d`
	if got := list[0].Error(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestErrorsCollectedAcrossDocuments(t *testing.T) {
	extra := route("a", "{service: nope}") + route("b", "{service: fraud, split: [{version: v1, weight: 1}]}") + svc("c", "{}")
	_, err := Parse("p.yaml", []byte(base+extra))
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("got %v, want an ErrorList", err)
	}
	docs := map[string]bool{}
	for _, e := range list {
		docs[e.Kind+"/"+e.Name] = true
	}
	if len(docs) != 3 || !docs["Route/a"] || !docs["Route/b"] || !docs["Service/c"] {
		t.Errorf("want errors from all three bad documents, got %v", err)
	}
	for i := 1; i < len(list); i++ {
		if list[i].Line < list[i-1].Line {
			t.Errorf("errors not sorted by line: %v", err)
		}
	}
}

func TestDefaults(t *testing.T) {
	m, err := Parse("p.yaml", []byte(base+route("solo", "{service: churn, match: {model: churn}, retries: {}, slo: {availability: 99}}")+
		route("ens", "{service: fraud, match: {model: f}, ensemble: {members: [{version: v1}, {version: v2}]}}")+
		d(KindGateway, "edge", "{port: 8080, routes: [fraud]}")))
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config.Spec
	if c.TrustDomain != DefaultTrustDomain || c.MTLS.Mode != MTLSStrict || c.CA.Issuer != IssuerBuiltin ||
		c.CA.Builtin.StateDir != DefaultCAStateDir || c.Certificates.TTL != DefaultCertTTL || c.ModelHeader != DefaultModelHeader ||
		c.Filters.Fanout.Path != "/etc/maestro/wasm/fanout.wasm" {
		t.Errorf("mesh defaults: %+v", c)
	}
	fraud := m.Service("fraud")
	if fraud.Spec.Protocol != ProtocolGRPC || fraud.Spec.Identity != (Identity{Namespace: "ml", ServiceAccount: "fraud"}) ||
		fraud.Spec.ConnectTimeout != DefaultConnectTimeout {
		t.Errorf("service defaults: %+v", fraud.Spec)
	}
	solo := m.Route("solo").Spec
	if !reflect.DeepEqual(solo.Split, []Destination{{Service: "churn", Version: "v1", Weight: 100}}) {
		t.Errorf("single-version split default: %+v", solo.Split)
	}
	if solo.Match.Protocol != MatchHTTP || m.Route("fraud").Spec.Match.Protocol != MatchGRPC {
		t.Errorf("match protocol follows the service: %q, %q", solo.Match.Protocol, m.Route("fraud").Spec.Match.Protocol)
	}
	if solo.Retries.Attempts != DefaultRetryAttempts || len(solo.Retries.On) != 4 {
		t.Errorf("retry defaults: %+v", solo.Retries)
	}
	if solo.SLO.Window.D() != 30*24*time.Hour || len(solo.SLO.BurnWindows) != 3 {
		t.Errorf("slo defaults: %+v", solo.SLO)
	}
	e := m.Route("ens").Spec.Ensemble
	if e.Mode != ModeParallel || e.Strategy != StrategyMean || e.Quorum != 2 || e.Timeout != DefaultEnsembleTimeout ||
		e.Members[0] != (Member{Service: "fraud", Version: "v1", Model: "f", Weight: 1}) {
		t.Errorf("ensemble defaults: %+v", e)
	}
	g := m.Gateways[0].Spec
	if g.Address != DefaultGatewayAddress || g.Protocol != ProtocolGRPC || !reflect.DeepEqual(g.Hosts, []string{"*"}) ||
		g.Identity != (Identity{Namespace: DefaultNamespace, ServiceAccount: "edge"}) {
		t.Errorf("gateway defaults: %+v", g)
	}
	if sc := m.Sidecars[0].Spec; sc.Inbound.Port != DefaultInboundPort || sc.Inbound.Address != DefaultInboundAddress {
		t.Errorf("sidecar defaults: %+v", sc)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"250ms": 250 * time.Millisecond, "1h30m": 90 * time.Minute, "30d": 720 * time.Hour, "0s": 0} {
		got, err := ParseDuration(in)
		if err != nil || got.D() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1", "d", "-1d", "1.5d", "-3s", "99999999d"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", in)
		}
	}
}

func TestLoadIOErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Load(ctx); err == nil {
		t.Error("no paths: want an error")
	}
	if _, err := Load(ctx, filepath.Join(t.TempDir(), "missing.yaml")); err == nil || errors.Is(err, ErrInvalid) {
		t.Errorf("missing file: got %v, want an I/O error", err)
	}
	if _, err := Load(ctx, t.TempDir()); err == nil || !strings.Contains(err.Error(), "no .yaml") {
		t.Errorf("empty directory: got %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Load(cancelled, "../../examples/mesh.yaml"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
}

func TestEndpointsFile(t *testing.T) {
	eps, err := LoadEndpoints("testdata/eps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []Endpoint{{Address: "10.0.0.1", Port: 9001, Weight: 1, Region: "local", Zone: "a"},
		{Address: "10.0.0.2", Port: 9001, Weight: 3, Region: "local", Zone: "b"}}
	if !reflect.DeepEqual(eps, want) {
		t.Errorf("got %+v, want %+v", eps, want)
	}
}

// TestTypesDecodable walks the policy types: every field has a yaml tag
// and a kind the decoder handles, so "cannot decode into" is unreachable.
func TestTypesDecodable(t *testing.T) {
	var walk func(reflect.Type, string)
	seen := map[reflect.Type]bool{}
	walk = func(ty reflect.Type, path string) {
		if ty == durationType || seen[ty] {
			return
		}
		seen[ty] = true
		switch ty.Kind() {
		case reflect.Pointer, reflect.Slice:
			walk(ty.Elem(), path)
		case reflect.Map:
			if ty.Key().Kind() != reflect.String {
				t.Errorf("%s: map key %s", path, ty.Key())
			}
			walk(ty.Elem(), path)
		case reflect.Struct:
			for i := 0; i < ty.NumField(); i++ {
				f := ty.Field(i)
				if yamlName(f) == "" {
					t.Errorf("%s.%s has no yaml tag", path, f.Name)
					continue
				}
				walk(f.Type, path+"."+yamlName(f))
			}
		case reflect.String, reflect.Bool, reflect.Uint32, reflect.Float64:
		default:
			t.Errorf("%s: kind %s is not decoded", path, ty.Kind())
		}
	}
	for _, ty := range specTypes() {
		walk(ty.typ, ty.kind)
	}
	walk(reflect.TypeOf(Metadata{}), "metadata")
	walk(reflect.TypeOf(EndpointsFile{}), "endpoints")
}
