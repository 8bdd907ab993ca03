package wasmtest

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
// It also counts stack growths (runtime.newstack): Go's wasm port enters
// every export on a goroutine stack, and one that outgrows it is copied.
type GuestCounts struct {
	calls, mallocs, collections, growths atomic.Int64

	mu     sync.Mutex
	byName map[string]*atomic.Int64 // every function's calls
}

// Calls copies every function's calls so far, by name (functions never
// called included, with 0).
func (c *GuestCounts) Calls() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.byName))
	for name, n := range c.byName {
		out[name] = n.Load()
	}
	return out
}

// GuestSnapshot is GuestCounts at one moment.
type GuestSnapshot struct{ Calls, Mallocs, Collections, StackGrowths int64 }

// Snapshot reads the counts.
func (c *GuestCounts) Snapshot() GuestSnapshot {
	return GuestSnapshot{Calls: c.calls.Load(), Mallocs: c.mallocs.Load(), Collections: c.collections.Load(),
		StackGrowths: c.growths.Load()}
}

// Report reports the counts since s per operation over n operations:
// guest-allocs/op, guest-calls/op, gc-per-1k-op and stack-growths/op.
func (c *GuestCounts) Report(b *testing.B, s GuestSnapshot, n int) {
	now := c.Snapshot()
	b.ReportMetric(float64(now.StackGrowths-s.StackGrowths)/float64(n), "stack-growths/op")
	b.ReportMetric(float64(now.Mallocs-s.Mallocs)/float64(n), "guest-allocs/op")
	b.ReportMetric(float64(now.Calls-s.Calls)/float64(n), "guest-calls/op")
	b.ReportMetric(float64(now.Collections-s.Collections)*1000/float64(n), "gc-per-1k-op")
}

// Loop runs op for each iteration of b's loop on vm, a VM of the module
// LoadCounted returned with c, and reports the counts per op, vm's linear
// memory after the loop (vm-memory-bytes), and ns/op as 0: a module
// compiled with listeners spends its time in them, not in the filter.
func (c *GuestCounts) Loop(b *testing.B, vm *VM, op func() error) {
	b.Helper()
	before := c.Snapshot()
	for b.Loop() {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
	c.Report(b, before, b.N)
	b.ReportMetric(float64(vm.MemoryBytes()), "vm-memory-bytes")
	b.ReportMetric(0, "ns/op")
}

type guestListener struct {
	all, own, fn *atomic.Int64 // fn: nil, or the counter of a kind this function is
}

func (l guestListener) Before(context.Context, api.Module, api.FunctionDefinition, []uint64, experimental.StackIterator) {
	l.all.Add(1)
	l.own.Add(1)
	if l.fn != nil {
		l.fn.Add(1)
	}
}

func (guestListener) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {}

func (guestListener) Abort(context.Context, api.Module, api.FunctionDefinition, error) {}

func (c *GuestCounts) listener(def api.FunctionDefinition) experimental.FunctionListener {
	l := guestListener{all: &c.calls, own: &atomic.Int64{}}
	c.mu.Lock()
	if c.byName == nil {
		c.byName = map[string]*atomic.Int64{}
	}
	if n := c.byName[def.Name()]; n != nil {
		l.own = n // a name given twice: count them together
	} else {
		c.byName[def.Name()] = l.own
	}
	c.mu.Unlock()
	switch def.Name() {
	case "runtime.mallocgc":
		l.fn = &c.mallocs
	case "runtime.gcStart":
		l.fn = &c.collections
	case "runtime.newstack":
		l.fn = &c.growths
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

// ExportTimes accumulates the wall time the host spends in each of a
// module's proxy_on_* exports (outermost calls only: an allocation the
// guest serves inside a host call counts in its caller), with only the
// exports instrumented, so the figures stay close to the module's own.
type ExportTimes struct {
	mu    sync.Mutex
	start []time.Time // the calls in progress, outermost first
	calls map[string]*ExportTime
}

// ExportTime is one export's calls and their total time.
type ExportTime struct {
	Calls int64
	Total time.Duration
}

// Snapshot copies the times so far, by export name.
func (e *ExportTimes) Snapshot() map[string]ExportTime {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]ExportTime, len(e.calls))
	for k, v := range e.calls {
		out[k] = *v
	}
	return out
}

// Report reports the time since s per operation over n operations: the
// total as guest-ns/op, and each export's as <export>-ns/op.
func (e *ExportTimes) Report(b *testing.B, s map[string]ExportTime, n int) {
	var total time.Duration
	for name, t := range e.Snapshot() {
		d := t.Total - s[name].Total
		if d <= 0 {
			continue
		}
		total += d
		b.ReportMetric(float64(d.Nanoseconds())/float64(n), strings.TrimPrefix(name, "proxy_on_")+"-ns/op")
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(n), "guest-ns/op")
}

type exportListener struct {
	e    *ExportTimes
	name string
}

func (l exportListener) Before(context.Context, api.Module, api.FunctionDefinition, []uint64, experimental.StackIterator) {
	l.e.mu.Lock()
	l.e.start = append(l.e.start, time.Now())
	l.e.mu.Unlock()
}

func (l exportListener) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	l.e.pop(l.name)
}

func (l exportListener) Abort(context.Context, api.Module, api.FunctionDefinition, error) {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	l.e.pop(l.name)
}

func (e *ExportTimes) pop(name string) {
	n := len(e.start) - 1
	if n < 0 {
		return
	}
	d := time.Since(e.start[n])
	e.start = e.start[:n]
	if n > 0 {
		return // nested in another export's call
	}
	t := e.calls[name]
	if t == nil {
		t = &ExportTime{}
		e.calls[name] = t
	}
	t.Calls++
	t.Total += d
}

// LoadTimed builds the filter main package pkg (as Build) and compiles it
// with its proxy_on_* exports timed, apart from Load's shared module. The
// module is closed when the test ends.
func LoadTimed(tb testing.TB, pkg string) (*Module, *ExportTimes) {
	tb.Helper()
	times := &ExportTimes{calls: map[string]*ExportTime{}}
	ctx := experimental.WithFunctionListenerFactory(context.Background(),
		experimental.FunctionListenerFactoryFunc(func(def api.FunctionDefinition) experimental.FunctionListener {
			for _, name := range def.ExportNames() {
				if strings.HasPrefix(name, "proxy_on_") {
					return exportListener{e: times, name: name}
				}
			}
			return nil
		}))
	mod, err := wasmhost.Compile(ctx, Build(tb, pkg))
	if err != nil {
		tb.Fatalf("wasmtest: compile %s with timers: %v", pkg, err)
	}
	tb.Cleanup(func() { _ = mod.Close(context.Background()) })
	return mod, times
}
