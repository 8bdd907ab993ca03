package embedding

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/inference/runtime"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPredict measures top-10 over the demo's 500 items by batch size.
func BenchmarkPredict(b *testing.B) {
	dir := filepath.Join("..", "..", "..", "examples", "models", "recommendations", "1")
	m, err := Load(context.Background(), runtime.Spec{Dir: dir, Signature: spec(10, false)})
	if err != nil {
		b.Fatal(err)
	}
	for _, rows := range []int{1, 256} {
		b.Run("rows="+map[int]string{1: "1", 256: "256"}[rows], func(b *testing.B) {
			ids := make([]int64, rows)
			for i := range ids {
				ids[i] = 100000 + int64(i*7%1000)
			}
			in := []runtime.Tensor{users(ids...)}
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

// BenchmarkLoad measures parsing the demo's 415 KB embeddings file.
func BenchmarkLoad(b *testing.B) {
	dir := filepath.Join("..", "..", "..", "examples", "models", "recommendations", "1")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(context.Background(), runtime.Spec{Dir: dir, Signature: spec(10, false)}); err != nil {
			b.Fatal(err)
		}
	}
}
