package istio_test

import (
	"os"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/istio"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// BenchmarkRenderDemo measures rendering the demo mesh: building the
// resources alone, and building plus writing YAML (what the CLI does), so
// the share spent in YAML is a ratio within one run.
func BenchmarkRenderDemo(b *testing.B) {
	data, err := os.ReadFile(demoPath)
	if err != nil {
		b.Fatal(err)
	}
	pm, err := policy.Parse(demoPath, data)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("resources", func(b *testing.B) {
		var n int
		for b.Loop() {
			rs, err := istio.Render(pm, istio.Options{})
			if err != nil {
				b.Fatal(err)
			}
			n = len(rs)
		}
		b.ReportMetric(float64(n), "resources/op")
	})
	b.Run("yaml", func(b *testing.B) {
		var size int
		for b.Loop() {
			rs, err := istio.Render(pm, istio.Options{})
			if err != nil {
				b.Fatal(err)
			}
			out, err := istio.MarshalYAML(rs)
			if err != nil {
				b.Fatal(err)
			}
			size = len(out)
		}
		b.ReportMetric(float64(size), "bytes/op")
	})
}
