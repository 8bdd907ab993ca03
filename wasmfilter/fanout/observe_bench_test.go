package fanout_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/wasmfilter/fanout/fanouttest"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// BenchmarkObservationCost measures, interleaved in one run, what posting
// an observation of every request costs over the same REST fan-out
// without one: the latency the client sees (the callout is not waited
// for) and the process's CPU, which includes the local observer's.
func BenchmarkObservationCost(b *testing.B) {
	f := startFraud(b)
	in := features(1)
	obs := startObserver(b, http.StatusNoContent)
	clusters := map[string]wasmtest.Cluster{"observer": {Address: obs.addr}}
	for k, v := range f.clusters {
		clusters[k] = v
	}
	ctx := context.Background()
	observed := observedRoute(f, false, 100)
	plain := observedRoute(f, false, 100)
	plain.Observe = nil
	withVM, withoutVM := fanouttest.NewVM(b, clusters, observed), fanouttest.NewVM(b, clusters, plain)
	req := restRequest(b, "fraud", in)
	call := func(vm *wasmtest.VM) {
		resp, err := vm.RoundTrip(ctx, "fraud.v1", req)
		if err != nil {
			b.Fatal(err)
		}
		if resp.Status != 200 {
			b.Fatalf("status %d", resp.Status)
		}
	}
	for range 3 {
		call(withVM)
		call(withoutVM)
	}
	var with, without, withCPU, withoutCPU time.Duration
	for b.Loop() {
		c0, t0 := cpuTime(), time.Now()
		call(withoutVM)
		c1, t1 := cpuTime(), time.Now()
		call(withVM)
		with += time.Since(t1)
		// The observation's own round trip counts in the CPU, not in the
		// client's latency.
		if err := withVM.AwaitCallouts(ctx); err != nil {
			b.Fatal(err)
		}
		without += t1.Sub(t0)
		withCPU += cpuTime() - c1
		withoutCPU += c1 - c0
	}
	n := float64(b.N)
	b.ReportMetric(float64((with-without).Microseconds())/n, "added-µs/op")
	b.ReportMetric(float64((withCPU-withoutCPU).Microseconds())/n, "added-cpu-µs/op")
	b.ReportMetric(float64(without.Microseconds())/n, "unobserved-µs/op")
}
