package istio_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	extensions "istio.io/api/extensions/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/maestro-ml/maestro/controlplane/istio"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

// load writes docs to a policy file and loads it as maestro would.
func load(t *testing.T, docs string) *policy.Mesh {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(path, []byte(docs), 0o644); err != nil {
		t.Fatal(err)
	}
	pm, err := policy.Load(context.Background(), path)
	if err != nil {
		t.Fatalf("load policy: %v", err)
	}
	return pm
}

// render renders pm with default options, marshals and decodes it back.
func render(t *testing.T, pm *policy.Mesh) *rendered {
	t.Helper()
	rs, err := istio.Render(pm, istio.Options{})
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	data, err := istio.MarshalYAML(rs)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return decodeAll(t, data)
}

const header = `apiVersion: maestro.dev/v1alpha1
kind: Mesh
metadata: {name: t}
spec:
  trustDomain: td.example
  mtls: {mode: STRICT}
---
apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud, namespace: ml}
spec:
  versions:
    - {name: v1, labels: {version: v1}, endpoints: [{address: 127.0.0.1, port: 9001}]}
    - {name: v2, labels: {version: v2}, endpoints: [{address: 127.0.0.1, port: 9002}]}
    - {name: shadow, labels: {version: shadow}, endpoints: [{address: 127.0.0.1, port: 9003}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: web, namespace: ml}
spec:
  protocol: http
  versions:
    - {name: v1, endpoints: [{address: 127.0.0.1, port: 8001}]}
---
`

// meshSpecEnd is the last line of header's Mesh spec.
const meshSpecEnd = "  mtls: {mode: STRICT}\n"

const fraudHost = "fraud.ml.svc.cluster.local"

func route(r *rendered, vs, name string) *networking.HTTPRoute {
	v := r.vs["ml/"+vs]
	if v == nil {
		return nil
	}
	for _, h := range v.Spec.Http {
		if h.Name == name {
			return h
		}
	}
	return nil
}

func TestRenderFeatures(t *testing.T) {
	tests := []struct {
		name   string
		mesh   string // more lines of the Mesh spec in header
		policy string
		check  func(t *testing.T, r *rendered)
	}{
		{
			name: "canary split with subsets",
			policy: `kind: Route
apiVersion: maestro.dev/v1alpha1
metadata: {name: fraud, namespace: ml}
spec:
  service: fraud
  match: {model: fraud}
  split: [{version: v1, weight: 70}, {version: v2, weight: 30}]
`,
			check: func(t *testing.T, r *rendered) {
				h := route(r, "fraud", "fraud")
				if h == nil {
					t.Fatal("no http route fraud")
				}
				var got []string
				for _, d := range h.Route {
					got = append(got, d.Destination.Host+"/"+d.Destination.Subset+"="+strconv.Itoa(int(d.Weight)))
					if d.Destination.Port.GetNumber() != istio.DefaultGRPCPort {
						t.Errorf("port %d, want %d", d.Destination.Port.GetNumber(), istio.DefaultGRPCPort)
					}
				}
				want := []string{fraudHost + "/v1=70", fraudHost + "/v2=30"}
				if !slices.Equal(got, want) {
					t.Errorf("destinations %v, want %v", got, want)
				}
				m := h.Match[0]
				if m.Uri.GetExact() != policy.OIPInferPath || m.Headers[policy.DefaultModelHeader].GetExact() != "fraud" {
					t.Errorf("match %v, want the ModelInfer path with %s: fraud", m, policy.DefaultModelHeader)
				}
				dr := r.dr["ml/fraud"]
				if dr == nil || dr.Spec.Host != fraudHost {
					t.Fatalf("destination rule %v", dr)
				}
				var subsets []string
				for _, s := range dr.Spec.Subsets {
					subsets = append(subsets, s.Name+":"+s.Labels["version"])
				}
				if want := []string{"v1:v1", "v2:v2", "shadow:shadow"}; !slices.Equal(subsets, want) {
					t.Errorf("subsets %v, want %v", subsets, want)
				}
				if len(r.plugins) != 0 {
					t.Errorf("plugins %v for a route without ensemble or slo", r.plugins)
				}
			},
		},
		{
			name: "mirror, retries, timeout, faults",
			policy: `kind: Route
apiVersion: maestro.dev/v1alpha1
metadata: {name: fraud, namespace: ml}
spec:
  service: fraud
  match: {model: fraud}
  split: [{version: v1, weight: 100}]
  shadow: {version: shadow, percentage: 12.5}
  timeout: 3s
  retries: {attempts: 4, perTryTimeout: 250ms, on: [reset, unavailable]}
  fault:
    delay: {percentage: 5, duration: 100ms}
    abort: {percentage: 1, grpcStatus: 14}
`,
			check: func(t *testing.T, r *rendered) {
				h := route(r, "fraud", "fraud")
				if h.Mirror.GetHost() != fraudHost || h.Mirror.GetSubset() != "shadow" || h.MirrorPercentage.GetValue() != 12.5 {
					t.Errorf("mirror %v %v, want %s/shadow at 12.5%%", h.Mirror, h.MirrorPercentage, fraudHost)
				}
				if h.Timeout.AsDuration() != 3*time.Second {
					t.Errorf("timeout %v", h.Timeout.AsDuration())
				}
				if h.Retries.GetAttempts() != 4 || h.Retries.PerTryTimeout.AsDuration() != 250*time.Millisecond || h.Retries.GetRetryOn() != "reset,unavailable" {
					t.Errorf("retries %v", h.Retries)
				}
				d := h.Fault.GetDelay()
				if d.GetPercentage().GetValue() != 5 || d.GetFixedDelay().AsDuration() != 100*time.Millisecond {
					t.Errorf("delay %v", d)
				}
				a := h.Fault.GetAbort()
				if a.GetPercentage().GetValue() != 1 || a.GetGrpcStatus() != "UNAVAILABLE" {
					t.Errorf("abort %v", a)
				}
				if len(r.plugins) != 0 {
					t.Errorf("a shadow without compare needs no filter, got %v", r.plugins)
				}
			},
		},
		{
			name: "rules before the default split, REST on http services",
			policy: `kind: Route
apiVersion: maestro.dev/v1alpha1
metadata: {name: fraud, namespace: ml}
spec:
  service: fraud
  match: {model: fraud, protocol: any}
  rules:
    - name: beta
      headers: [{name: x-beta, exact: "yes"}, {name: x-debug, present: true, invert: true}]
      split: [{version: v2, weight: 100}]
  split: [{version: v1, weight: 100}]
---
kind: Route
apiVersion: maestro.dev/v1alpha1
metadata: {name: web, namespace: ml}
spec:
  service: web
  match: {model: web}
`,
			check: func(t *testing.T, r *rendered) {
				var names []string
				for _, h := range r.vs["ml/fraud"].Spec.Http {
					names = append(names, h.Name)
				}
				if want := []string{"fraud.beta", "fraud", "fraud.beta.rest", "fraud.rest"}; !slices.Equal(names, want) {
					t.Errorf("routes %v, want %v", names, want)
				}
				beta := route(r, "fraud", "fraud.beta")
				if beta.Match[0].Headers["x-beta"].GetExact() != "yes" || beta.Match[0].WithoutHeaders["x-debug"] == nil {
					t.Errorf("rule match %v", beta.Match[0])
				}
				if beta.Route[0].Destination.Subset != "v2" {
					t.Errorf("rule goes to %v", beta.Route[0].Destination)
				}
				if p := route(r, "fraud", "fraud.rest").Match[0].Uri.GetPrefix(); p != "/v2/models/fraud/" {
					t.Errorf("REST prefix %q", p)
				}
				web := route(r, "web", "web")
				if web == nil || web.Match[0].Uri.GetPrefix() != "/v2/models/web/" || web.Route[0].Destination.Port.GetNumber() != istio.DefaultHTTPPort {
					t.Errorf("web route %v", web)
				}
			},
		},
		{
			name: "ensemble, compared shadow and slo filters",
			policy: `kind: Route
apiVersion: maestro.dev/v1alpha1
metadata: {name: fraud, namespace: ml}
spec:
  service: fraud
  match: {model: fraud}
  split: [{version: v1, weight: 100}]
  shadow: {version: shadow, percentage: 30, compare: true}
  slo: {availability: 99.5, latency: [{percentile: 99, threshold: 200ms}]}
---
kind: Route
apiVersion: maestro.dev/v1alpha1
metadata: {name: ens, namespace: ml}
spec:
  service: fraud
  match: {model: ens}
  ensemble:
    strategy: weighted_mean
    members: [{version: v1, model: fraud, weight: 1}, {version: v2, model: fraud, weight: 3}]
    quorum: 1
    timeout: 150ms
`,
			check: func(t *testing.T, r *rendered) {
				if h := route(r, "fraud", "fraud"); h.Mirror != nil {
					t.Errorf("a compared shadow is the filter's, but Envoy mirrors it too: %v", h.Mirror)
				}
				if d := route(r, "fraud", "ens").Route; len(d) != 1 || d[0].Destination.Subset != "v1" {
					t.Errorf("ensemble route goes to %v, want its first member", d)
				}
				fo := fanoutConfig(t, r)
				ens := fo.Route("ens")
				if ens == nil || ens.Strategy != filterconfig.StrategyWeightedMean || ens.Quorum != 1 || ens.TimeoutMs != 150 || len(ens.Members) != 2 {
					t.Fatalf("ens fanout %+v", ens)
				}
				if ens.Members[1].Cluster != "outbound|9000|v2|"+fraudHost || ens.Members[1].Weight != 3 || ens.Members[1].Authority != fraudHost+":9000" {
					t.Errorf("member %+v", ens.Members[1])
				}
				if ens.Primary != "outbound|9000|v1|"+fraudHost {
					t.Errorf("primary %q", ens.Primary)
				}
				sh := fo.Route("fraud")
				if sh == nil || len(sh.Shadows) != 1 || sh.Shadows[0].Cluster != "outbound|9000|shadow|"+fraudHost || sh.Shadows[0].Percent != 30 {
					t.Errorf("shadow fanout %+v", sh)
				}
				so := sloConfig(t, r)
				if len(so.Objectives) != 1 || so.Objectives[0].Route != "fraud" || so.Objectives[0].Availability != 0.995 || so.Objectives[0].Latency[0].ThresholdMs != 200 {
					t.Errorf("slo %+v", so)
				}
				fp := &r.plugins["istio-system/maestro-fanout"].Spec
				sp := &r.plugins["istio-system/maestro-slo"].Spec
				if fp.Phase != extensions.PluginPhase_AUTHN || sp.Phase != extensions.PluginPhase_STATS {
					t.Errorf("phases fanout %v slo %v", fp.Phase, sp.Phase)
				}
				if fp.Url != "file:///etc/maestro/wasm/fanout.wasm" || fp.PluginName != "fanout" {
					t.Errorf("fanout url %q name %q", fp.Url, fp.PluginName)
				}
				if len(fp.Match) != 1 || fp.Match[0].Mode != typev1beta1.WorkloadMode_CLIENT {
					t.Errorf("fanout match %v: the filters run where the VirtualServices route", fp.Match)
				}
				checkReferences(t, r)
			},
		},
		{
			name: "authorization and strict mTLS",
			policy: `kind: Gateway
apiVersion: maestro.dev/v1alpha1
metadata: {name: edge, namespace: ml}
spec:
  port: 8443
  routes: [fraud]
  identity: {serviceAccount: edge-sa}
---
kind: Route
apiVersion: maestro.dev/v1alpha1
metadata: {name: fraud, namespace: ml}
spec:
  service: fraud
  match: {model: fraud}
  split: [{version: v1, weight: 100}]
---
kind: Sidecar
apiVersion: maestro.dev/v1alpha1
metadata: {name: fraud, namespace: ml}
spec:
  service: fraud
  inbound: {port: 15006, appPort: 9001}
---
kind: AuthorizationPolicy
apiVersion: maestro.dev/v1alpha1
metadata: {name: fraud-callers, namespace: ml}
spec:
  service: fraud
  rules:
    - name: edge
      from: {gateways: [edge], identities: ["spiffe://td.example/ns/ops/sa/admin"], namespaces: [ml]}
      to: {models: [fraud], pathPrefixes: [/v2/health/]}
`,
			check: func(t *testing.T, r *rendered) {
				if m := r.peer["istio-system/default"].Spec.Mtls.Mode; m != security.PeerAuthentication_MutualTLS_STRICT {
					t.Errorf("mtls %v", m)
				}
				if r.dr["ml/fraud"].Spec.TrafficPolicy.Tls.GetMode() != networking.ClientTLSSettings_ISTIO_MUTUAL {
					t.Errorf("destination rule tls %v", r.dr["ml/fraud"].Spec.TrafficPolicy.Tls)
				}
				ap := r.authz["ml/fraud-callers"]
				if ap == nil || ap.Spec.Action != security.AuthorizationPolicy_ALLOW || ap.Spec.Selector.MatchLabels["app"] != "fraud" {
					t.Fatalf("authorization policy %v", ap)
				}
				if len(ap.Spec.Rules) != 2 {
					t.Fatalf("rules %v, want the gRPC model rule and the path rule", ap.Spec.Rules)
				}
				grpc, paths := ap.Spec.Rules[0], ap.Spec.Rules[1]
				wantPrincipals := []string{"td.example/ns/ml/sa/edge-sa", "td.example/ns/ops/sa/admin"}
				for _, rule := range ap.Spec.Rules {
					if got := rule.From[0].Source.Principals; !slices.Equal(got, wantPrincipals) {
						t.Errorf("principals %v, want %v", got, wantPrincipals)
					}
					if got := rule.From[1].Source.Namespaces; !slices.Equal(got, []string{"ml"}) {
						t.Errorf("namespaces %v", got)
					}
				}
				if grpc.To[0].Operation.Paths[0] != policy.OIPInferPath || grpc.When[0].Key != "request.headers[x-maestro-model]" || !slices.Equal(grpc.When[0].Values, []string{"fraud"}) {
					t.Errorf("gRPC rule %v", grpc)
				}
				if want := []string{"/v2/health/*", "/v2/models/fraud/*"}; !slices.Equal(paths.To[0].Operation.Paths, want) {
					t.Errorf("paths %v, want %v", paths.To[0].Operation.Paths, want)
				}
			},
		},
		{
			name: "sequence routes to its last step",
			policy: `kind: Route
apiVersion: maestro.dev/v1alpha1
metadata: {name: pipe, namespace: ml}
spec:
  service: fraud
  match: {model: pipe}
  ensemble:
    mode: sequence
    members: [{version: v1, model: features}, {version: v2, model: fraud}]
`,
			check: func(t *testing.T, r *rendered) {
				d := route(r, "fraud", "pipe").Route
				if len(d) != 1 || d[0].Destination.Subset != "v2" {
					t.Errorf("sequence route goes to %v, want the last step v2", d)
				}
				fr := fanoutConfig(t, r).Route("pipe")
				if fr == nil || !fr.Sequence || fr.Primary != "outbound|9000|v2|"+fraudHost {
					t.Errorf("sequence fanout %+v", fr)
				}
				checkReferences(t, r)
			},
		},
		{
			name: "max_confidence keeps the policy's member order, mean sorts",
			policy: `kind: Route
apiVersion: maestro.dev/v1alpha1
metadata: {name: confident, namespace: ml}
spec:
  service: fraud
  match: {model: confident}
  ensemble:
    strategy: max_confidence
    members: [{version: v2, model: fraud}, {version: v1, model: fraud}]
---
kind: Route
apiVersion: maestro.dev/v1alpha1
metadata: {name: averaged, namespace: ml}
spec:
  service: fraud
  match: {model: averaged}
  ensemble:
    members: [{version: v2, model: fraud}, {version: v1, model: fraud}]
`,
			check: func(t *testing.T, r *rendered) {
				// max_confidence breaks ties by member order: the order the
				// user wrote is the order the filter gets, as natively.
				v1, v2 := "outbound|9000|v1|"+fraudHost, "outbound|9000|v2|"+fraudHost
				for route, want := range map[string][]string{"confident": {v2, v1}, "averaged": {v1, v2}} {
					fr := fanoutConfig(t, r).Route(route)
					if fr == nil {
						t.Fatalf("no fanout route %s", route)
					}
					var got []string
					for _, m := range fr.Members {
						got = append(got, m.Cluster)
					}
					if !slices.Equal(got, want) {
						t.Errorf("route %s: members %v, want %v", route, got, want)
					}
				}
			},
		},
		{
			name: "deny by route, remote and absolute filter modules",
			mesh: `  filters:
    fanout:
      remote: {url: "https://wasm.example/fanout.wasm", sha256: ` + strings.Repeat("ab", 32) + `, service: web}
    slo: {path: /opt/filters/slo.wasm}
`,
			policy: `kind: Route
apiVersion: maestro.dev/v1alpha1
metadata: {name: web, namespace: ml}
spec:
  service: web
  match: {pathPrefix: /admin/}
  slo: {errorRate: 2}
---
kind: Route
apiVersion: maestro.dev/v1alpha1
metadata: {name: ens, namespace: ml}
spec:
  service: fraud
  match: {model: ens}
  ensemble: {members: [{version: v1}, {version: v2}]}
---
kind: Sidecar
apiVersion: maestro.dev/v1alpha1
metadata: {name: web, namespace: ml}
spec:
  service: web
  inbound: {port: 15006, appPort: 8001}
---
kind: AuthorizationPolicy
apiVersion: maestro.dev/v1alpha1
metadata: {name: no-admin, namespace: ml}
spec:
  service: web
  action: DENY
  rules:
    - name: admin
      from: {services: [fraud]}
      to: {routes: [web], paths: [/debug]}
`,
			check: func(t *testing.T, r *rendered) {
				ap := r.authz["ml/no-admin"]
				if ap == nil || ap.Spec.Action != security.AuthorizationPolicy_DENY || len(ap.Spec.Rules) != 1 {
					t.Fatalf("authorization policy %v", ap)
				}
				rule := ap.Spec.Rules[0]
				if got := rule.From[0].Source.Principals; !slices.Equal(got, []string{"td.example/ns/ml/sa/fraud"}) {
					t.Errorf("principals %v", got)
				}
				if got := rule.To[0].Operation.Paths; !slices.Equal(got, []string{"/debug", "/admin/*"}) {
					t.Errorf("paths %v", got)
				}
				if len(rule.When) != 0 {
					t.Errorf("conditions %v on a rule without models", rule.When)
				}
				fp := &r.plugins["istio-system/maestro-fanout"].Spec
				if fp.Url != "https://wasm.example/fanout.wasm" || fp.Sha256 != strings.Repeat("ab", 32) {
					t.Errorf("fanout url %q sha256 %q", fp.Url, fp.Sha256)
				}
				if sp := &r.plugins["istio-system/maestro-slo"].Spec; sp.Url != "file:///opt/filters/slo.wasm" {
					t.Errorf("slo url %q", sp.Url)
				}
				if so := sloConfig(t, r); so.Objectives[0].Route != "web" || so.Objectives[0].ErrorRate != 0.02 {
					t.Errorf("slo %+v", so.Objectives)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(header, meshSpecEnd, meshSpecEnd+tc.mesh, 1)
			tc.check(t, render(t, load(t, doc+tc.policy)))
		})
	}
}

func TestRenderMTLSModes(t *testing.T) {
	for mode, want := range map[string]security.PeerAuthentication_MutualTLS_Mode{
		policy.MTLSStrict:     security.PeerAuthentication_MutualTLS_STRICT,
		policy.MTLSPermissive: security.PeerAuthentication_MutualTLS_PERMISSIVE,
		policy.MTLSDisable:    security.PeerAuthentication_MutualTLS_DISABLE,
	} {
		t.Run(mode, func(t *testing.T) {
			r := render(t, load(t, strings.TrimSuffix(strings.Replace(header, "mode: STRICT", "mode: "+mode, 1), "---\n")))
			if got := r.peer["istio-system/default"].Spec.Mtls.Mode; got != want {
				t.Errorf("mode %v, want %v", got, want)
			}
			tls := r.dr["ml/fraud"].Spec.TrafficPolicy.Tls
			if (mode == policy.MTLSDisable) != (tls == nil) {
				t.Errorf("destination rule tls %v with mesh mode %s", tls, mode)
			}
		})
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	pm := load(t, demoPolicy(t))
	first := renderYAML(t, pm)
	for range 5 {
		if got := renderYAML(t, pm); string(got) != string(first) {
			t.Fatal("two renders of one policy differ")
		}
	}
}

// TestRenderExamples renders every example policy and decodes it strictly.
func TestRenderExamples(t *testing.T) {
	paths, err := filepath.Glob("../../examples/policies/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no example policies: %v", err)
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			pm, err := policy.Load(context.Background(), p)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			r := render(t, pm)
			checkReferences(t, r)
		})
	}
}

func renderYAML(t *testing.T, pm *policy.Mesh) []byte {
	t.Helper()
	rs, err := istio.Render(pm, istio.Options{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := istio.MarshalYAML(rs)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func pluginJSON(t *testing.T, wp *extensions.WasmPlugin) []byte {
	t.Helper()
	data, err := protojson.Marshal(wp.PluginConfig)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func fanoutConfig(t *testing.T, r *rendered) *filterconfig.Fanout {
	t.Helper()
	wp := r.plugins["istio-system/maestro-fanout"]
	if wp == nil {
		t.Fatal("no fanout WasmPlugin")
	}
	f, err := filterconfig.ParseFanout(pluginJSON(t, &wp.Spec))
	if err != nil {
		t.Fatalf("fanout plugin config: %v", err)
	}
	return f
}

func sloConfig(t *testing.T, r *rendered) *filterconfig.SLO {
	t.Helper()
	wp := r.plugins["istio-system/maestro-slo"]
	if wp == nil {
		t.Fatal("no slo WasmPlugin")
	}
	s, err := filterconfig.ParseSLO(pluginJSON(t, &wp.Spec))
	if err != nil {
		t.Fatalf("slo plugin config: %v", err)
	}
	return s
}

// checkReferences checks that what the filters name exists in Istio: each
// route is a VirtualService http route name, each cluster is
// outbound|<port>|<subset>|<host> of a DestinationRule subset, and every
// VirtualService destination has a subset in its host's DestinationRule.
func checkReferences(t *testing.T, r *rendered) {
	t.Helper()
	routes := map[string]bool{}
	subsets := map[string]bool{}
	for _, vs := range r.vs {
		for _, h := range vs.Spec.Http {
			routes[h.Name] = true
		}
	}
	for _, dr := range r.dr {
		for _, s := range dr.Spec.Subsets {
			subsets[dr.Spec.Host+"|"+s.Name] = true
		}
	}
	for _, vs := range r.vs {
		for _, h := range vs.Spec.Http {
			for _, d := range h.Route {
				if !subsets[d.Destination.Host+"|"+d.Destination.Subset] {
					t.Errorf("route %s: destination %s subset %s has no DestinationRule subset", h.Name, d.Destination.Host, d.Destination.Subset)
				}
			}
		}
	}
	cluster := func(c string) {
		parts := strings.Split(c, "|")
		if len(parts) != 4 || parts[0] != "outbound" || !subsets[parts[3]+"|"+parts[2]] {
			t.Errorf("cluster %q names no DestinationRule subset", c)
		}
	}
	if r.plugins["istio-system/maestro-fanout"] != nil {
		for _, fr := range fanoutConfig(t, r).Routes {
			if !routes[fr.Route] {
				t.Errorf("fanout route %q is no VirtualService route", fr.Route)
			}
			for _, m := range fr.Members {
				cluster(m.Cluster)
			}
			for _, s := range fr.Shadows {
				cluster(s.Cluster)
			}
		}
	}
	if r.plugins["istio-system/maestro-slo"] != nil {
		for _, o := range sloConfig(t, r).Objectives {
			if !routes[o.Route] {
				t.Errorf("slo route %q is no VirtualService route", o.Route)
			}
		}
	}
}

func TestGRPCStatusName(t *testing.T) {
	for code, want := range map[uint32]string{
		1: "CANCELLED", 4: "DEADLINE_EXCEEDED", 8: "RESOURCE_EXHAUSTED", 14: "UNAVAILABLE", 16: "UNAUTHENTICATED", 17: "UNKNOWN",
	} {
		if got := istio.GRPCStatusName(code); got != want {
			t.Errorf("GRPCStatusName(%d) = %q, want %q", code, got, want)
		}
	}
}

func TestRenderWithoutPolicy(t *testing.T) {
	for name, pm := range map[string]*policy.Mesh{"nil": nil, "unloaded": {}} {
		if _, err := istio.Render(pm, istio.Options{}); !errors.Is(err, istio.ErrNoPolicy) {
			t.Errorf("%s: error %v, want ErrNoPolicy", name, err)
		}
	}
}
