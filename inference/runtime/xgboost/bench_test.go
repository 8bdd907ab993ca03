package xgboost

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/runtime/fixture"
)

// demo loads a demo model version and a batch of rows tiled from its
// fixture (NaN rows included).
func demo(b *testing.B, model, version string, rows int) (*Model, runtime.Tensor) {
	b.Helper()
	dir := filepath.Join("..", "..", "..", "examples", "models")
	fx, err := fixture.Load(filepath.Join(dir, "fixtures", model+"-v"+version+".json"))
	if err != nil {
		b.Fatal(err)
	}
	in := fx.Inputs[0]
	width := in.Shape[1]
	s := sig(width, fx.Outputs[0].Shape[1])
	s.Inputs[0].Name = in.Name
	m, err := New(mustRead(b, filepath.Join(dir, model, version, DefaultFile)), s)
	if err != nil {
		b.Fatal(err)
	}
	src := in.Data.([]float32)
	x := make([]float32, rows*int(width))
	for i := range x {
		x[i] = src[i%len(src)]
	}
	return m, runtime.Tensor{Name: in.Name, Datatype: runtime.FP32, Shape: []int64{int64(rows), width}, Data: x}
}

// BenchmarkPredict measures Predict, allocation of its outputs included, by
// batch size; ns/row is the figure to compare.
func BenchmarkPredict(b *testing.B) {
	for _, c := range []struct {
		model, version string
		rows           int
	}{
		{"fraud", "1", 1}, {"fraud", "1", 1024},
		{"fraud", "2", 1}, {"fraud", "2", 64}, {"fraud", "2", 1024},
		{"churn", "2", 1}, {"churn", "2", 1024},
	} {
		b.Run(c.model+"-v"+c.version+"/rows="+itoa(c.rows), func(b *testing.B) {
			m, in := demo(b, c.model, c.version, c.rows)
			ctx := context.Background()
			inputs := []runtime.Tensor{in}
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				if _, err := m.Predict(ctx, inputs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(b.N*c.rows), "cpu-ns/row")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*c.rows), "ns/row")
			b.ReportMetric(float64(m.Info().Trees), "trees")
		})
	}
}

// cpuTime is the process's user+system CPU time. The benchmark machines are
// shared, so wall time per op includes time spent descheduled; CPU time per
// row is the steadier figure.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWalk compares, in one run, the flattened four-trees-at-a-time
// walk Predict uses with a plain branchy walk of XGBoost's own JSON layout
// (the test oracle), on a 1,024-row fraud v2 batch; the ratio of their
// cpu-ns/row is the figure to read.
func BenchmarkWalk(b *testing.B) {
	m, in := demo(b, "fraud", "2", 1024)
	e := m.e
	x := in.Data.([]float32)
	rows := 1024
	out := make([]float32, rows)
	scratch := make([]float32, e.scratchLen(rows))
	ref := newReference(b, mustRead(b, filepath.Join("..", "..", "..", "examples", "models", "fraud", "2", DefaultFile)))
	for _, c := range []struct {
		name string
		walk func()
	}{
		{"quads", func() { e.margins(x, rows, out, scratch) }},
		{"json-layout", func() { ref.margins(x, rows) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				c.walk()
			}
			b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(b.N*rows), "cpu-ns/row")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
		})
	}
}

// BenchmarkLoad measures parsing and flattening the larger fraud model.
func BenchmarkLoad(b *testing.B) {
	data := mustRead(b, filepath.Join("..", "..", "..", "examples", "models", "fraud", "2", DefaultFile))
	s := sig(30, 1)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(data, s); err != nil {
			b.Fatal(err)
		}
	}
}

func itoa(n int) string {
	s := ""
	for {
		s = string(rune('0'+n%10)) + s
		n /= 10
		if n == 0 {
			return s
		}
	}
}
