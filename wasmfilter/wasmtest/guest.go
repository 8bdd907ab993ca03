package wasmtest

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/maestro-ml/maestro/wasmfilter/wasmhost"
)

// GuestCounts counts what a module's own code does: its function calls,
// its Go runtime's heap allocations (runtime.mallocgc) and the garbage
// collections it starts (runtime.gcStart; a wasip1 module collects inside
// the callback that allocates). The counts are deterministic, unlike this
// machine's timings; a module compiled with them runs far slower, so time
// it without.
type GuestCounts struct{ calls, mallocs, collections atomic.Int64 }

// GuestSnapshot is GuestCounts at one moment.
type GuestSnapshot struct{ Calls, Mallocs, Collections int64 }

// Snapshot reads the counts.
func (c *GuestCounts) Snapshot() GuestSnapshot {
	return GuestSnapshot{Calls: c.calls.Load(), Mallocs: c.mallocs.Load(), Collections: c.collections.Load()}
}

// Report reports the counts since s per operation over n operations:
// guest-allocs/op, guest-calls/op and gc-per-1k-op.
func (c *GuestCounts) Report(b *testing.B, s GuestSnapshot, n int) {
	now := c.Snapshot()
	b.ReportMetric(float64(now.Mallocs-s.Mallocs)/float64(n), "guest-allocs/op")
	b.ReportMetric(float64(now.Calls-s.Calls)/float64(n), "guest-calls/op")
	b.ReportMetric(float64(now.Collections-s.Collections)*1000/float64(n), "gc-per-1k-op")
}

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

func (c *GuestCounts) listener(def api.FunctionDefinition) experimental.FunctionListener {
	l := guestListener{all: &c.calls}
	switch def.Name() {
	case "runtime.mallocgc":
		l.fn = &c.mallocs
	case "runtime.gcStart":
		l.fn = &c.collections
	}
	return l
}

// LoadCounted builds the filter main package pkg (as Build) and compiles it
// with counting listeners, apart from Load's shared module; its VMs count
// into the returned GuestCounts. The module is closed when the test ends.
func LoadCounted(tb testing.TB, pkg string) (*Module, *GuestCounts) {
	tb.Helper()
	counts := &GuestCounts{}
	ctx := experimental.WithFunctionListenerFactory(context.Background(),
		experimental.FunctionListenerFactoryFunc(counts.listener))
	mod, err := wasmhost.Compile(ctx, Build(tb, pkg))
	if err != nil {
		tb.Fatalf("wasmtest: compile %s with counters: %v", pkg, err)
	}
	tb.Cleanup(func() { _ = mod.Close(context.Background()) })
	return mod, counts
}
