package server_test

import (
	"context"
	"errors"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// spinWindow is how long before each send the pacer stops sleeping and
// polls the clock instead, yielding between reads so that the calls in
// flight still run: a sleep ends up to the kernel's timer slack (50 us by
// default) late.
const spinWindow = 100 * time.Microsecond

// pace sends n calls of each of fs open loop, each at rate per second,
// from a goroutine that does nothing else: the calls take turns, evenly
// spaced (with two, f[1]'s are half an interval after f[0]'s), so that
// whatever the machine does to one happens to the other too. Each call runs
// on a goroutine of its own from its scheduled time. pace returns, per
// function, each call's latency from its scheduled time (so that a late
// send counts against the figure, as it would for a real client) and how
// late the pacer sent each, so that a run shows whether its schedule held.
func pace(b *testing.B, rate, n int, fs ...func(ctx context.Context) error) (latency, lag [][]time.Duration) {
	b.Helper()
	latency, lag = make([][]time.Duration, len(fs)), make([][]time.Duration, len(fs))
	for k := range fs {
		latency[k], lag[k] = make([]time.Duration, n), make([]time.Duration, n)
	}
	interval := time.Second / time.Duration(rate*len(fs))
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		start := time.Now().Add(interval)
		for i := range n * len(fs) {
			k, j := i%len(fs), i/len(fs)
			due := start.Add(time.Duration(i) * interval)
			waitUntil(due)
			lag[k][j] = time.Since(due)
			wg.Go(func() {
				if err := fs[k](context.Background()); err != nil && failed.Add(1) == 1 {
					firstErr.Store(err)
				}
				latency[k][j] = time.Since(due)
			})
		}
	}()
	<-sent
	wg.Wait()
	if failed.Load() > 0 {
		b.Fatalf("%d calls failed, first: %v", failed.Load(), errors.Unwrap(firstErr.Load().(error)))
	}
	return latency, lag
}

// waitUntil returns at due or as soon after it as the scheduler allows:
// it sleeps until spinWindow before due, then yields until due.
func waitUntil(due time.Time) {
	// Pacing, not synchronisation: the schedule is the load pattern.
	if d := time.Until(due) - spinWindow; d > 0 {
		sleep(d)
	}
	for time.Now().Before(due) {
		goruntime.Gosched()
	}
}
