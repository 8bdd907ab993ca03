package fanout_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/maestro-ml/maestro/wasmfilter/fanout/fanouttest"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// BenchmarkFanoutGuestWork measures what fanout.wasm itself does per gRPC
// fan-out over two members (the gateway benchmark's ensemble). counts: its
// heap allocations, its function calls, and how many garbage collections
// its Go runtime starts per 1,000 fan-outs (a wasip1 module collects inside
// the requests that allocate), with the VM's linear memory at the end;
// deterministic, unlike this machine's timings (the module is compiled
// with a listener on every function, so its time there means nothing).
// time: the wall time spent in each of the module's callbacks, host calls
// made from them included, per fan-out (only the exports are timed).
func BenchmarkFanoutGuestWork(b *testing.B) {
	f := startFraud(b)
	b.Run("counts", func(b *testing.B) {
		mod, counts := wasmtest.LoadCounted(b, fanouttest.Pkg)
		vm, fanOut := guestWorkVM(b, f, mod)
		counts.Loop(b, vm, func() error { fanOut(); return nil })
	})
	b.Run("time", func(b *testing.B) {
		mod, times := wasmtest.LoadTimed(b, fanouttest.Pkg)
		_, fanOut := guestWorkVM(b, f, mod)
		before := times.Snapshot()
		for b.Loop() {
			fanOut()
		}
		times.Report(b, before, b.N)
	})
}

// guestWorkVM starts a VM of mod fanning gRPC requests for route fraud out
// to two members, and returns it with a function making one fan-out,
// already warmed up.
func guestWorkVM(b testing.TB, f *fixture, mod *wasmtest.Module) (*wasmtest.VM, func()) {
	ctx := context.Background()
	route := filterconfig.FanoutRoute{Route: "fraud", Members: f.routeMembers(true, fraudMembers[:2]...),
		Primary: grpcCluster("fraud.v1"), TimeoutMs: 10000}
	cfg, err := json.Marshal(filterconfig.Fanout{Routes: []filterconfig.FanoutRoute{route}})
	if err != nil {
		b.Fatal(err)
	}
	vm, err := mod.NewVM(ctx, wasmtest.Config{PluginConfig: cfg, Clusters: f.clusters,
		Properties: map[string][]byte{"xds.route_name": []byte("fraud")}, AllowOnHeadersStopIteration: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { vm.Close() })
	req := grpcRequest(b, "fraud", features(1))
	fanOut := func() {
		resp, err := vm.RoundTrip(ctx, grpcCluster("fraud.v1"), req)
		if err != nil {
			b.Fatal(err)
		}
		if resp.Status != 200 || resp.Trailer("grpc-status") != "0" {
			b.Fatalf("status %d, grpc-status %q", resp.Status, resp.Trailer("grpc-status"))
		}
	}
	for range 20 { // connections, and the route's first-use metrics
		fanOut()
	}
	return vm, fanOut
}

// passThroughConfig is the gateway's fanout configuration when the route
// a request takes has no fan-out settings: model routing on, an ensemble
// on another route.
func passThroughConfig(tb testing.TB) []byte {
	tb.Helper()
	cfg, err := json.Marshal(filterconfig.Fanout{
		Routes: []filterconfig.FanoutRoute{{Route: "fraud-ensemble", TimeoutMs: 1000,
			Members: []filterconfig.FanoutMember{{Cluster: "a", Model: "fraud"}, {Cluster: "b", Model: "fraud"}}}},
		ModelRouting: &filterconfig.ModelRouting{Header: "x-maestro-model", Routes: []filterconfig.ModelRoute{
			{Route: "fraud", Model: "fraud"}, {Route: "fraud-ensemble", Model: "fraud-ensemble"}}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// passThroughExchange is a unary gRPC ModelInfer as a standard gRPC client
// sends it through the gateway with the model header, and its answer.
func passThroughExchange(tb testing.TB) *wasmtest.Exchange {
	tb.Helper()
	msg, err := oip.EncodeGRPCRequest(&oip.Request{ModelName: "fraud", Inputs: []oip.Tensor{features(1)}})
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := oip.EncodeGRPCResponse(&oip.Response{ModelName: "fraud", ModelVersion: "1",
		Outputs: []oip.Tensor{{Name: "probabilities", Datatype: "FP32", Shape: []int64{1, 2}, Values: []float64{0.25, 0.75}}}})
	if err != nil {
		tb.Fatal(err)
	}
	return &wasmtest.Exchange{
		RequestHeaders: [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", grpcInferPath},
			{":authority", "127.0.0.1:8080"}, {"content-type", "application/grpc"}, {"user-agent", "grpc-go/1.78.0"},
			{"te", "trailers"}, {"x-maestro-model", "fraud"}, {"x-request-id", "5f0b3c1e-8a4d-4f6e-9c2b-1d7e0a9b8c6f"}},
		RequestBody:      oip.Frame(msg),
		ResponseHeaders:  [][2]string{{":status", "200"}, {"content-type", "application/grpc"}},
		ResponseBody:     oip.Frame(resp),
		ResponseTrailers: [][2]string{{"grpc-status", "0"}, {"grpc-message", ""}},
	}
}

const grpcInferPath = "/inference.GRPCInferenceService/ModelInfer"

// BenchmarkFanoutPassThrough measures fanout.wasm on a request whose route
// has no fan-out settings (the gateway's plain routes: the filter only
// looks and lets it through): the wall time of each callback (time, read
// against the host's own floor in BenchmarkHostCallFloor) and the
// process's CPU per request; and, in a module compiled with counting
// listeners, the guest's allocations, calls and collections per request.
func BenchmarkFanoutPassThrough(b *testing.B) {
	props := map[string][]byte{"xds.route_name": []byte("fraud")}
	ex := passThroughExchange(b)
	b.Run("time", func(b *testing.B) {
		vm, err := wasmtest.Load(b, fanouttest.Pkg).NewVM(context.Background(), wasmtest.Config{
			PluginConfig: passThroughConfig(b), Properties: props, AllowOnHeadersStopIteration: true})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { vm.Close() })
		for range 100 {
			if err := ex.Run(vm, nil); err != nil {
				b.Fatal(err)
			}
		}
		var phases wasmtest.PhaseTimes
		c0 := cpuTime()
		for b.Loop() {
			if err := ex.Run(vm, &phases); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		phases.Report(b, b.N)
	})
	b.Run("guest-counts", func(b *testing.B) {
		mod, counts := wasmtest.LoadCounted(b, fanouttest.Pkg)
		vm, err := mod.NewVM(context.Background(), wasmtest.Config{
			PluginConfig: passThroughConfig(b), Properties: props, AllowOnHeadersStopIteration: true})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { vm.Close() })
		for range 100 {
			if err := ex.Run(vm, nil); err != nil {
				b.Fatal(err)
			}
		}
		counts.Loop(b, vm, func() error { return ex.Run(vm, nil) })
	})
}
