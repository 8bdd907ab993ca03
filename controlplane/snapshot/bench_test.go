package snapshot_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
	"github.com/maestro-ml/maestro/controlplane/snapshot"
)

// The scale: 10,000 routes over 20,000 service versions.
const (
	benchRoutes   = 10_000
	benchVersions = 20_000
)

// BenchmarkTranslateFull is a full rebuild from the IR to consistent
// snapshots with no history (every resource built, validated, hashed).
func BenchmarkTranslateFull(b *testing.B) {
	m := modeltest.Large(benchRoutes, benchVersions)
	b.ReportAllocs()
	cpu := startCPU(b)
	for b.Loop() {
		if _, err := snapshot.Translate(m); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(benchRoutes), "routes")
	b.ReportMetric(float64(benchVersions), "clusters")
}

// BenchmarkTranslateWeightsOnly rebuilds after a change of one split's
// weights, with history, and reports how many resources a delta client is
// sent per change.
func BenchmarkTranslateWeightsOnly(b *testing.B) {
	meshes := [2]*modeltestMesh{newMesh(90), newMesh(80)}
	tr := snapshot.NewTranslator()
	prev, err := tr.Translate(meshes[0].m)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu := startCPU(b)
	pushed, i := 0, 1
	for b.Loop() {
		next, err := tr.Translate(meshes[i%2].m)
		if err != nil {
			b.Fatal(err)
		}
		pushed += countChanges(prev.Snapshots[modeltest.GatewayGroup], next.Snapshots[modeltest.GatewayGroup])
		prev = next
		i++
	}
	cpu.report(b)
	b.ReportMetric(float64(pushed)/float64(i-1), "resources-pushed/op")
}

type modeltestMesh = struct{ m *model.Mesh }

// newMesh returns the large mesh with the first route's weights w/100-w.
func newMesh(w uint32) *modeltestMesh {
	m := modeltest.Large(benchRoutes, benchVersions)
	r := &m.Groups[0].Listeners[0].Routes.VirtualHosts[0].Routes[0]
	r.Action.Clusters[0].Weight, r.Action.Clusters[1].Weight = w, 100-w
	return &modeltestMesh{m: m}
}

func countChanges(prev, next *cache.Snapshot) int {
	n := 0
	for _, names := range snapshot.Changes(prev, next) {
		n += len(names)
	}
	return n
}

// cpuClock measures the process's CPU time (user+system): on a shared
// machine whose other tenants keep both cores busy, wall time per op mostly
// measures the wait for a core, CPU time what the work costs.
type cpuClock struct{ start time.Duration }

func startCPU(b *testing.B) cpuClock {
	b.ResetTimer()
	return cpuClock{start: cpuTime(b)}
}

func (c cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(cpuTime(b)-c.start)/float64(b.N), "cpu-ns/op")
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
