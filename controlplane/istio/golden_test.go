package istio_test

import (
	"flag"
	"os"
	"slices"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

var update = flag.Bool("update", false, "rewrite examples/istio/mesh.yaml from examples/mesh.yaml")

const (
	demoPath   = "../../examples/mesh.yaml"
	goldenPath = "../../examples/istio/mesh.yaml"
)

func demoPolicy(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(demoPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestDemoGolden keeps examples/istio/mesh.yaml what `maestro istio render
// -f examples/mesh.yaml` writes, and checks its meaning against the demo.
func TestDemoGolden(t *testing.T) {
	pm := load(t, demoPolicy(t))
	got := renderYAML(t, pm)
	if *update {
		if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run go test ./controlplane/istio -run TestDemoGolden -update)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s is stale: run go test ./controlplane/istio -run TestDemoGolden -update", goldenPath)
	}
	r := decodeAll(t, want)
	checkReferences(t, r)

	if mode := r.peer["istio-system/default"].Spec.Mtls.Mode.String(); mode != policy.MTLSPermissive {
		t.Errorf("mtls mode %s, want the demo's PERMISSIVE", mode)
	}
	canary := route(r, "fraud", "fraud")
	var weights []int32
	for _, d := range canary.Route {
		weights = append(weights, d.Weight)
	}
	if !slices.Equal(weights, []int32{90, 10}) || canary.Route[0].Destination.Subset != "v1" || canary.Route[1].Destination.Subset != "v2" {
		t.Errorf("fraud canary %v, want v1 90 / v2 10", canary.Route)
	}
	churn := r.vs["ml/churn"].Spec.Http
	if len(churn) != 2 || churn[0].Name != "churn.try-v2" || churn[0].Match[0].Headers["x-churn-version"].GetExact() != "v2" {
		t.Errorf("churn routes %v, want the x-churn-version rule first", churn)
	}
	fo := fanoutConfig(t, r)
	if sh := fo.Route("fraud"); sh == nil || len(sh.Shadows) != 1 || sh.Shadows[0].Percent != 20 || sh.Shadows[0].Model != "fraud-logistic" {
		t.Errorf("fraud compared shadow %+v", sh)
	}
	if rec := fo.Route("recommendations"); rec == nil || rec.Strategy != filterconfig.StrategyMaxConfidence || rec.Quorum != 1 {
		t.Errorf("recommendations ensemble %+v", rec)
	}
	so := sloConfig(t, r)
	if len(so.Objectives) != 3 {
		t.Errorf("%d slo objectives, want 3 (fraud, fraud-ensemble, recommendations)", len(so.Objectives))
	}
}
