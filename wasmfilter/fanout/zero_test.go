package fanout_test

import (
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/wasmfilter/fanout"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/fanouttest"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// TestZeroCountsAreNeverIncremented compares a shadow that answers exactly
// as the route does (no disagreeing row, no difference) in a host that,
// like Envoy, refuses a counter increment of 0: the filter asks for none,
// so it logs no refusal, and the zero counters are still exported.
func TestZeroCountsAreNeverIncremented(t *testing.T) {
	f := startFraud(t)
	ctx := testCtx(t)
	clusters := map[string]wasmtest.Cluster{"fraud.v1": f.clusters["fraud.v1"]}
	// Unversioned requests reach fraud's latest version, 2, which is also
	// what the shadow is asked.
	vm := fanouttest.NewVM(t, clusters, shadowRoute("fraud.v1", 100))
	const requests = 2
	for range requests {
		resp, err := vm.RoundTrip(ctx, "fraud.v1", restRequest(t, "fraud", features(3)))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 200 {
			t.Fatalf("status %d", resp.Status)
		}
	}
	if err := vm.AwaitCallouts(ctx); err != nil {
		t.Fatal(err)
	}
	for _, l := range vm.Logs() {
		if strings.Contains(l.Message, "increment") {
			t.Errorf("host refused an increment: %s", l.Message)
		}
	}
	stats := vm.Stats()
	if got := stats.Value(fanout.ShadowMetric("compared_total", "fraud", "fraud.v2")); got != requests {
		t.Fatalf("compared_total = %d, want %d", got, requests)
	}
	for _, m := range []string{"class_disagree_rows_total", "abs_diff_micros_total"} {
		name := fanout.ShadowMetric(m, "fraud", "fraud.v2")
		if got, ok := stats.Get(name); !ok || got.Value != 0 {
			t.Errorf("%s = %+v (defined %v), want exported at 0", name, got, ok)
		}
	}
}
