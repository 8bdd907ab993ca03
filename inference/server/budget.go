package server

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/maestro-ml/maestro/internal/telemetry"
)

// Errors of the request memory budget; both are RESOURCE_EXHAUSTED on
// gRPC. Over HTTP errOverBudget is 429 (retry later) and errTooLarge 413
// (never accepted as sent).
var (
	errOverBudget = errors.New("over the server's request memory budget")
	errTooLarge   = errors.New("too large")
)

// budget bounds the bytes that requests in flight hold once decoded, so
// that concurrent large requests cannot exhaust the process's memory. A
// request that does not fit is refused at once, never queued: a caller
// waiting on memory held by slow uploads could wait without bound.
type budget struct {
	sem      *semaphore.Weighted
	total    int64
	inFlight atomic.Int64
	rejected *prometheus.CounterVec
}

func newBudget(total int64, reg prometheus.Registerer) *budget {
	b := &budget{sem: semaphore.NewWeighted(total), total: total}
	ns, sub := telemetry.Namespace, "inference"
	b.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "request_memory_rejections_total", Help: "Requests refused by the request memory budget, by protocol and reason (busy: retry later; too_large: over the whole budget)."},
		[]string{"protocol", "reason"})
	reg.MustRegister(b.rejected, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
		Name: "request_memory_bytes", Help: "Bytes reserved by requests in flight under the request memory budget."},
		func() float64 { return float64(b.inFlight.Load()) }))
	return b
}

// reservation is what one request holds; release returns all of it.
type reservation struct {
	b        *budget
	protocol string
	held     int64
}

func (b *budget) reserve(protocol string) *reservation {
	return &reservation{b: b, protocol: protocol}
}

// take reserves n more bytes, or fails without waiting.
func (r *reservation) take(n int64) error {
	if n <= 0 {
		return nil
	}
	if r.held+n > r.b.total {
		r.b.rejected.WithLabelValues(r.protocol, "too_large").Inc()
		return fmt.Errorf("request needs %d bytes once decoded, more than the server's whole request memory budget of %d: %w", r.held+n, r.b.total, errTooLarge)
	}
	if !r.b.sem.TryAcquire(n) {
		r.b.rejected.WithLabelValues(r.protocol, "busy").Inc()
		return fmt.Errorf("request needs %d bytes and requests in flight hold %d of %d: retry later: %w", r.held+n, r.b.inFlight.Load(), r.b.total, errOverBudget)
	}
	r.held += n
	r.b.inFlight.Add(n)
	return nil
}

func (r *reservation) release() {
	if r.held > 0 {
		r.b.sem.Release(r.held)
		r.b.inFlight.Add(-r.held)
		r.held = 0
	}
}
