//go:build !wasip1

package wasmhost_test

import (
	"context"
	"syscall"
	"testing"

	"github.com/maestro-ml/maestro/wasmfilter/wasmhost"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkHostCallFloor measures the fixed cost of driving a Go-built
// module through the host: a stream's create/done/log/delete (four guest
// calls, two host calls) and one response-headers callback (one guest
// call, three host calls, one of which allocates in the guest). Filters'
// per-request figures are best read against it.
func BenchmarkHostCallFloor(b *testing.B) {
	vm, err := wasmtest.Load(b, probe).NewVM(context.Background(), wasmhost.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { vm.Close() })
	b.Run("stream-lifecycle", func(b *testing.B) {
		c0 := cpuTime()
		for i := 0; i < b.N; i++ {
			s, err := vm.NewStream()
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Done(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
	})
	b.Run("response-headers", func(b *testing.B) {
		s, err := vm.NewStream()
		if err != nil {
			b.Fatal(err)
		}
		h := [][2]string{{":status", "200"}}
		c0 := cpuTime()
		for i := 0; i < b.N; i++ {
			if _, err := s.ResponseHeaders(h, true); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
	})
}
