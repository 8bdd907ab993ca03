package istio_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/istio"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/xds"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

// TestFilterConfigsMatchTheNativeControlPlane checks that the WasmPlugins
// configure the filters as the native control plane configures the demo's
// edge gateway: the same entries per route, with Istio's cluster names in
// place of the native ones and callouts addressed to the Istio host.
func TestFilterConfigsMatchTheNativeControlPlane(t *testing.T) {
	pm := load(t, demoPolicy(t))
	m, err := model.Build(pm, model.BuildOptions{})
	if err != nil {
		t.Fatalf("native model: %v", err)
	}
	g := m.Group(model.GatewayGroupName("edge"))
	if g == nil || len(g.Listeners) == 0 {
		t.Fatal("no edge gateway listener in the native model")
	}
	rc := &g.Listeners[0].Routes
	rename := map[string]string{}
	for _, s := range pm.Services {
		host := istio.Host(s.Metadata.Name, s.Metadata.Namespace, istio.DefaultClusterDomain)
		for _, v := range s.Spec.Versions {
			rename[model.ClusterName(s.Metadata.Name, v.Name)] = istio.ClusterName(istio.DefaultGRPCPort, v.Name, host)
		}
	}
	r := render(t, pm)

	native := xds.FanoutConfig(rc)
	if len(native.Routes) != 3 {
		t.Fatalf("native fanout has %d routes, want the demo's 3 (fraud shadow, 2 ensembles)", len(native.Routes))
	}
	ours := fanoutConfig(t, r)
	if len(ours.Routes) != len(native.Routes) {
		t.Errorf("%d fanout routes, native has %d", len(ours.Routes), len(native.Routes))
	}
	for _, want := range native.Routes {
		got := ours.Route(want.Route)
		if got == nil || got.Route != want.Route {
			t.Errorf("fanout route %q missing", want.Route)
			continue
		}
		want.Primary = renamed(t, rename, want.Primary)
		for i := range want.Members {
			want.Members[i].Cluster = renamed(t, rename, want.Members[i].Cluster)
		}
		for i := range want.Shadows {
			want.Shadows[i].Cluster = renamed(t, rename, want.Shadows[i].Cluster)
		}
		g := *got
		// Both sides convert the ensemble with model.FanoutOf: members whose
		// order carries meaning keep the policy's order and must match as
		// they are; the others are sorted by each side's own cluster names,
		// which may sort differently, and their order means nothing.
		keepsOrder := want.Sequence || want.Stacking != nil || want.Strategy == filterconfig.StrategyMaxConfidence
		if !keepsOrder {
			g.Members = byCluster(g.Members)
			want.Members = byCluster(want.Members)
		}
		for i := range g.Members {
			if g.Members[i].Authority == "" {
				t.Errorf("route %q member %q: no authority", want.Route, g.Members[i].Cluster)
			}
			g.Members[i].Authority = ""
		}
		for i := range g.Shadows {
			g.Shadows[i].Authority = ""
		}
		if a, b := mustJSON(t, g), mustJSON(t, want); a != b {
			t.Errorf("fanout route %q:\n got %s\nwant %s", want.Route, a, b)
		}
	}
	nativeSLO := xds.SLOConfig(rc)
	if len(nativeSLO.Objectives) != 3 {
		t.Fatalf("native slo has %d objectives, want 3", len(nativeSLO.Objectives))
	}
	if a, b := mustJSON(t, sloConfig(t, r)), mustJSON(t, nativeSLO); a != b {
		t.Errorf("slo config:\n got %s\nwant %s", a, b)
	}
}

func renamed(t *testing.T, rename map[string]string, native string) string {
	t.Helper()
	if native == "" {
		return ""
	}
	n, ok := rename[native]
	if !ok {
		t.Fatalf("native cluster %q is no service version", native)
	}
	return n
}

func byCluster(ms []filterconfig.FanoutMember) []filterconfig.FanoutMember {
	out := slices.Clone(ms)
	slices.SortFunc(out, func(a, b filterconfig.FanoutMember) int { return strings.Compare(a.Cluster, b.Cluster) })
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
