package fanout_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/maestro-ml/maestro/wasmfilter/fanout/fanouttest"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	"github.com/maestro-ml/maestro/wasmfilter/wasmhost"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// guestCounts counts calls of the guest's own functions: all of them,
// the Go runtime's allocator, and the start of a garbage collection.
type guestCounts struct{ calls, mallocs, collections atomic.Int64 }

type guestListener struct {
	all, fn *atomic.Int64 // fn: nil, or the counter of this function
}

func (l guestListener) Before(context.Context, api.Module, api.FunctionDefinition, []uint64, experimental.StackIterator) {
	l.all.Add(1)
	if l.fn != nil {
		l.fn.Add(1)
	}
}

func (guestListener) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {}

func (guestListener) Abort(context.Context, api.Module, api.FunctionDefinition, error) {}

func (c *guestCounts) listener(def api.FunctionDefinition) experimental.FunctionListener {
	l := guestListener{all: &c.calls}
	switch def.Name() {
	case "runtime.mallocgc":
		l.fn = &c.mallocs
	case "runtime.gcStart":
		l.fn = &c.collections
	}
	return l
}

// BenchmarkFanoutGuestWork counts what fanout.wasm itself does per gRPC
// fan-out over two members (the gateway benchmark's ensemble): its heap
// allocations, its function calls, and how many garbage collections its
// Go runtime starts per 1,000 fan-outs (a wasip1 module collects inside the
// requests that allocate), with the VM's linear memory at the end. The
// counts are deterministic, unlike this machine's timings; the module is
// compiled with a function listener, so its time here means nothing.
func BenchmarkFanoutGuestWork(b *testing.B) {
	counts := &guestCounts{}
	ctx := experimental.WithFunctionListenerFactory(context.Background(),
		experimental.FunctionListenerFactoryFunc(counts.listener))
	mod, err := wasmhost.Compile(ctx, wasmtest.Build(b, fanouttest.Pkg))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = mod.Close(context.Background()) })
	f := startFraud(b)
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
	calls, mallocs, collections := counts.calls.Load(), counts.mallocs.Load(), counts.collections.Load()
	for b.Loop() {
		fanOut()
	}
	n := float64(b.N)
	b.ReportMetric(float64(counts.mallocs.Load()-mallocs)/n, "guest-allocs/op")
	b.ReportMetric(float64(counts.calls.Load()-calls)/n, "guest-calls/op")
	b.ReportMetric(float64(counts.collections.Load()-collections)*1000/n, "gc-per-1k-op")
	b.ReportMetric(float64(vm.MemoryBytes()), "vm-memory-bytes")
	b.ReportMetric(0, "ns/op") // the listener's time, not the filter's
}
