package linear

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/runtime/fixture"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPredict measures the fraud-logistic demo model by batch size.
func BenchmarkPredict(b *testing.B) {
	dir := filepath.Join("..", "..", "..", "examples", "models")
	fx, err := fixture.Load(filepath.Join(dir, "fixtures", "fraud-logistic-v1.json"))
	if err != nil {
		b.Fatal(err)
	}
	s := sig(30, 1)
	s.Inputs[0].Name = "features"
	m, err := Load(context.Background(), runtime.Spec{Dir: filepath.Join(dir, "fraud-logistic", "1"), Signature: s})
	if err != nil {
		b.Fatal(err)
	}
	src := fx.Inputs[0].Data.([]float32)
	for _, rows := range []int{1, 1024} {
		b.Run("rows="+map[int]string{1: "1", 1024: "1024"}[rows], func(b *testing.B) {
			x := make([]float32, rows*30)
			for i := range x {
				x[i] = src[i%len(src)]
			}
			in := []runtime.Tensor{{Name: "features", Datatype: runtime.FP32, Shape: []int64{int64(rows), 30}, Data: x}}
			ctx := context.Background()
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				if _, err := m.Predict(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(b.N*rows), "cpu-ns/row")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
		})
	}
}
