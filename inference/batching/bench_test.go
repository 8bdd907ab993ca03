package batching

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	rt "github.com/maestro-ml/maestro/inference/runtime"
)

// fixedCost is a model whose evaluation costs a fixed time per call plus a
// small time per row, as models with a per-call overhead (a GPU launch, a
// remote call, a large matrix product) do. It spins rather than sleeps, so
// its cost is CPU.
type fixedCost struct{ perCall, perRow time.Duration }

func (f fixedCost) Predict(_ context.Context, in []rt.Tensor) ([]rt.Tensor, error) {
	end := time.Now().Add(f.perCall + time.Duration(in[0].Shape[0])*f.perRow)
	for time.Now().Before(end) {
	}
	x := in[0].Data.([]float32)
	return []rt.Tensor{{Name: "y", Datatype: rt.FP32, Shape: slices.Clone(in[0].Shape), Data: slices.Clone(x)}}, nil
}

func (fixedCost) MemoryBytes() int64 { return 0 }

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMergeCrossover compares, at 1 and 64 callers and for models of
// increasing per-call cost, evaluating without a batcher ("off"), through
// the adaptive batcher ("adaptive", the default), and through a batcher
// that always queues ("always"), in alternating rounds of one run. It
// reports throughput and CPU per request and each mode's throughput
// relative to "off": the adaptive batcher should never fall more than 2%
// below it, and should gain once a call costs more than DefaultMergeAbove.
//
//	go test -run '^$' -bench MergeCrossover -benchtime 2000x ./inference/batching
func BenchmarkMergeCrossover(b *testing.B) {
	for _, perCall := range []time.Duration{2 * time.Microsecond, 5 * time.Microsecond, 10 * time.Microsecond, 20 * time.Microsecond, 100 * time.Microsecond} {
		for _, callers := range []int{1, 64} {
			b.Run(fmt.Sprintf("call=%v/c%d", perCall, callers), func(b *testing.B) {
				m := fixedCost{perCall: perCall, perRow: 200 * time.Nanosecond}
				cfg := Config{MaxBatchSize: 64, MaxQueueDelay: 200 * time.Microsecond}
				adaptive := New(m, cfg)
				defer adaptive.Close()
				cfg.MergeAbove = -1
				always := New(m, cfg)
				defer always.Close()
				modes := []struct {
					name    string
					predict func(context.Context, []rt.Tensor) ([]rt.Tensor, error)
				}{{"off", m.Predict}, {"adaptive", adaptive.Predict}, {"always", always.Predict}}
				const rounds = 5
				per := max(b.N/rounds, callers)
				wall := make([]time.Duration, len(modes))
				cpu := make([]time.Duration, len(modes))
				for range rounds {
					for i, md := range modes {
						w, c := drive(b, per, callers, md.predict)
						wall[i] += w
						cpu[i] += c
					}
				}
				n := float64(per * rounds)
				for i, md := range modes {
					b.ReportMetric(n/wall[i].Seconds(), md.name+"-req/s")
					b.ReportMetric(float64(cpu[i].Nanoseconds())/n/1000, md.name+"-cpu-µs")
					if i > 0 {
						b.ReportMetric(wall[0].Seconds()/wall[i].Seconds(), md.name+"/off")
					}
				}
			})
		}
	}
}

// drive makes n 1-row calls from c goroutines and returns the wall and
// process CPU time they took.
func drive(b *testing.B, n, c int, predict func(context.Context, []rt.Tensor) ([]rt.Tensor, error)) (time.Duration, time.Duration) {
	in := []rt.Tensor{{Name: "x", Datatype: rt.FP32, Shape: []int64{1, 4}, Data: []float32{1, 2, 3, 4}}}
	var next atomic.Int64
	g, ctx := errgroup.WithContext(context.Background())
	cpu0, start := processCPU(b), time.Now()
	for range c {
		g.Go(func() error {
			for next.Add(1) <= int64(n) {
				if _, err := predict(ctx, in); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start), processCPU(b) - cpu0
}
