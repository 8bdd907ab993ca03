//go:build !wasip1

package slo_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
	"github.com/maestro-ml/maestro/wasmfilter/slo"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// nativeMetrics and nativeStore give the native Meter what Envoy gives the
// module: named stats and a CAS store, in plain maps.
type nativeMetrics map[string]uint64

func (m nativeMetrics) Define(kind pw.MetricType, name string) (slo.Metric, error) {
	if kind == pw.MetricTypeGauge {
		return func(v uint64) { m[name] = v }, nil
	}
	return func(v uint64) { m[name] += v }, nil
}

type nativeStore map[string][]byte

func (s nativeStore) Get(k string) ([]byte, uint32, error) {
	v, ok := s[k]
	if !ok {
		return nil, 0, pw.ErrNotFound
	}
	return v, 1, nil
}

func (s nativeStore) Set(k string, v []byte, _ uint32) error { s[k] = v; return nil }

var (
	benchReq  = [][2]string{{":method", "POST"}, {":path", "/v2/models/fraud/infer"}, {":authority", "x"}, {"content-type", "application/json"}}
	benchResp = [][2]string{{":status", "200"}, {"content-type", "application/json"}}
)

// wasmRequest drives one request through the module's callbacks as Envoy
// would for a bodiless exchange.
func wasmRequest(b *testing.B, vm *wasmtest.VM) {
	s, err := vm.NewStream()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.RequestHeaders(benchReq, true); err != nil {
		b.Fatal(err)
	}
	if _, err := s.ResponseHeaders(benchResp, true); err != nil {
		b.Fatal(err)
	}
	if err := s.Done(); err != nil {
		b.Fatal(err)
	}
}

// nativeRequest is the same per-request logic as the module's stream,
// called directly: classify the request, read the budget header, meter it.
func nativeRequest(b *testing.B, m *slo.Meter) {
	start := time.Now()
	model := slo.ModelFromPath(benchReq[1][1])
	m.BudgetHeader("fraud-route", model)
	end := time.Now()
	err := m.Observe(slo.Observation{Route: "fraud-route", Model: model, Status: 200,
		GRPCStatus: slo.ParseGRPCStatus(""), Latency: end.Sub(start), End: end})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSLOPerRequest reports the per-request cost of slo.wasm in the
// wazero host and of the same logic run natively, in one run, and their
// ratio.
func BenchmarkSLOPerRequest(b *testing.B) {
	vm, err := wasmtest.Load(b, sloPkg).NewVM(context.Background(), wasmtest.Config{
		PluginConfig: []byte(sloConfig), Properties: routeProps})
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	cfg, err := filterconfig.ParseSLO([]byte(sloConfig))
	if err != nil {
		b.Fatal(err)
	}
	meter := slo.NewMeter(cfg, slo.Env{Metrics: nativeMetrics{}, Store: nativeStore{}})
	wasmRequest(b, vm) // define the series' stats outside the timing
	nativeRequest(b, meter)
	b.ResetTimer()
	// The machine is shared, so CPU time (this process's) is reported beside
	// wall time: it does not count the time other processes hold the cores.
	t0, c0 := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		wasmRequest(b, vm)
	}
	wasmNs := float64(time.Since(t0).Nanoseconds()) / float64(b.N)
	wasmCPU := float64(cpuTime()-c0) / float64(b.N)
	t1, c1 := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		nativeRequest(b, meter)
	}
	nativeNs := float64(time.Since(t1).Nanoseconds()) / float64(b.N)
	nativeCPU := float64(cpuTime()-c1) / float64(b.N)
	b.ReportMetric(wasmNs, "wasm-ns/req")
	b.ReportMetric(nativeNs, "native-ns/req")
	b.ReportMetric(wasmNs/nativeNs, "wasm/native")
	b.ReportMetric(wasmCPU, "wasm-cpu-ns/req")
	b.ReportMetric(nativeCPU, "native-cpu-ns/req")
	b.ReportMetric(wasmCPU/nativeCPU, "cpu-wasm/native")
	if got := vm.Stats().Value(slo.StatName("requests_total", "fraud-route", "fraud")); got != uint64(b.N)+1 {
		b.Fatalf("module metered %d requests, want %d", got, b.N+1)
	}
}

// cpuTime is the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkSLOVM reports the .wasm size, the linear memory of one started
// VM, and the time to start one from the compiled module.
func BenchmarkSLOVM(b *testing.B) {
	mod := wasmtest.Load(b, sloPkg)
	var mem uint32
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		vm, err := mod.NewVM(context.Background(), wasmtest.Config{PluginConfig: []byte(sloConfig), Properties: routeProps})
		if err != nil {
			b.Fatal(err)
		}
		mem = vm.MemoryBytes()
		if err := vm.Close(); err != nil && !errors.Is(err, wasmtest.ErrClosed) {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(mod.Size()), "wasm-bytes")
	b.ReportMetric(float64(mem), "mem-bytes/vm")
}

// BenchmarkSLOGRPCExchange measures slo.wasm on the gateway's unary gRPC
// exchange: each callback's wall time and the process's CPU per request;
// and, in a module compiled with counting listeners, the guest's
// allocations, calls and collections per request.
func BenchmarkSLOGRPCExchange(b *testing.B) {
	ex := grpcExchange()
	want := slo.StatName("requests_total", "fraud-route", "fraud")
	run := func(b *testing.B, mod *wasmtest.Module, phases *wasmtest.PhaseTimes) *wasmtest.VM {
		vm, err := mod.NewVM(context.Background(), wasmtest.Config{PluginConfig: []byte(sloConfig), Properties: routeProps})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { vm.Close() })
		for range 100 {
			if err := ex.Run(vm, nil); err != nil {
				b.Fatal(err)
			}
		}
		if got := vm.Stats().Value(want); got != 100 {
			b.Fatalf("%s = %d after 100 requests", want, got)
		}
		return vm
	}
	b.Run("time", func(b *testing.B) {
		var phases wasmtest.PhaseTimes
		vm := run(b, wasmtest.Load(b, sloPkg), &phases)
		c0 := cpuTime()
		for b.Loop() {
			if err := ex.Run(vm, &phases); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
		phases.Report(b, b.N)
	})
	b.Run("guest-counts", func(b *testing.B) {
		mod, counts := wasmtest.LoadCounted(b, sloPkg)
		vm := run(b, mod, nil)
		counts.Loop(b, vm, func() error { return ex.Run(vm, nil) })
	})
}
