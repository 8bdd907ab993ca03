package builtin_test

import (
	goruntime "runtime"
	"testing"

	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/runtime/builtin"
)

// TestMemoryBytesTracksHeap checks each demo model's MemoryBytes, which the
// model cache evicts by, against the heap the loaded model really retains.
func TestMemoryBytesTracksHeap(t *testing.T) {
	reg := builtin.Registry()
	for _, d := range demoVersions(t) {
		t.Run(d.model+"/"+d.version, func(t *testing.T) {
			// Load several copies so the per-copy figure rises above the
			// heap's own noise.
			const copies = 8
			models := make([]runtime.Model, copies)
			var before, after goruntime.MemStats
			goruntime.GC()
			goruntime.ReadMemStats(&before)
			for i := range models {
				models[i] = load(t, reg, d)
			}
			goruntime.GC()
			goruntime.ReadMemStats(&after)
			retained := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / copies
			est := models[0].MemoryBytes()
			goruntime.KeepAlive(models)
			t.Logf("MemoryBytes %d, retained heap %d", est, retained)
			// Small models are judged by an absolute slack, where allocator
			// rounding and runtime noise dominate; larger ones by ratio.
			const slack = 8 << 10
			diff := est - retained
			if diff < 0 {
				diff = -diff
			}
			if diff > slack && (est < retained/2 || est > 2*retained) {
				t.Errorf("MemoryBytes %d, but loading retained %d heap bytes", est, retained)
			}
		})
	}
}
