package snapshot_test

import (
	"testing"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
	"github.com/maestro-ml/maestro/controlplane/snapshot"
)

// BenchmarkTranslateRouteChange translates, with history, a change of one
// route's weights in the large gateway mesh, with the route first or last
// in its virtual host: where the route sits must not matter.
func BenchmarkTranslateRouteChange(b *testing.B) {
	for _, at := range []struct {
		name string
		pos  func(n int) int
	}{
		{"first", func(int) int { return 0 }},
		{"last", func(n int) int { return n - 1 }},
	} {
		b.Run(at.name, func(b *testing.B) {
			var ms [2]*model.Mesh
			for i, w := range []uint32{90, 80} {
				m := modeltest.Large(benchRoutes, benchVersions)
				rs := m.Groups[0].Listeners[0].Routes.VirtualHosts[0].Routes
				r := &rs[at.pos(len(rs))]
				r.Action.Clusters[0].Weight, r.Action.Clusters[1].Weight = w, 100-w
				ms[i] = m
			}
			translateAlternately(b, ms, func(set *snapshot.Set) {
				if len(set.Changed) != 1 {
					b.Fatalf("changed groups %v, want the gateway's only", set.Changed)
				}
			})
		})
	}
}

// translateAlternately translates ms[0] once, then times translations of
// ms[1], ms[0], ... with the Translator's history, handing each set to
// check.
func translateAlternately(b *testing.B, ms [2]*model.Mesh, check func(*snapshot.Set)) {
	tr := snapshot.NewTranslator()
	if _, err := tr.Translate(ms[0]); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu := startCPU(b)
	i := 1
	for b.Loop() {
		set, err := tr.Translate(ms[i%2])
		if err != nil {
			b.Fatal(err)
		}
		check(set)
		i++
	}
	cpu.report(b)
}
