// Package batching is a dynamic batcher in the manner of Triton's: requests
// that arrive close together for the same model are merged into one batch
// along the first (batch) dimension, evaluated in one call, and the outputs
// are split back per request.
//
// Merging is adaptive. A request that finds the batcher idle is evaluated
// at once on its caller's goroutine, and so is every request while the
// model's measured evaluation cost is below Config.MergeAbove: handing a
// request to the collector and evaluator goroutines costs a few
// microseconds of CPU and wake-up latency, which a merge only repays when
// it saves evaluations that cost more than that.
package batching

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	rt "github.com/maestro-ml/maestro/inference/runtime"
)

// Config tunes a Batcher.
type Config struct {
	// MaxBatchSize is the most rows one merged batch may hold. Requests with
	// this many rows or more are evaluated on their own.
	MaxBatchSize int64
	// MaxQueueDelay is how long the oldest waiting request may be held back
	// for others to join it. Zero merges only requests already waiting.
	MaxQueueDelay time.Duration
	// PreferredSizes are batch sizes dispatched at once when reached.
	PreferredSizes []int64
	// MaxInFlight bounds concurrent evaluations; the default is GOMAXPROCS.
	// While all are busy, new requests queue and so form larger batches.
	MaxInFlight int
	// ObserveBatch, if set, is told the rows of every evaluated batch.
	ObserveBatch func(rows int64)
	// ObserveQueue, if set, is told how long each request waited.
	ObserveQueue func(time.Duration)
	// Tracer, if set, records a span per request for its time in the
	// queue, and a span per merged batch linked to its requests' spans.
	Tracer trace.Tracer
	// MergeAbove is the measured cost of evaluating one request at and
	// above which concurrent requests queue to be merged; below it each
	// caller evaluates on its own goroutine, as without batching. Zero
	// means DefaultMergeAbove; a negative value always queues.
	MergeAbove time.Duration
}

// DefaultMergeAbove is where merging starts to pay on the machine measured
// (BenchmarkMergeCrossover, 64 callers): a hand-off through the queue costs
// a few microseconds of CPU and wake-ups, so always queueing lost 27-40% of
// throughput on models costing 2-5 us a call, and gained 2-3x from 10 us.
const DefaultMergeAbove = 10 * time.Microsecond

// Batcher merges concurrent Predict calls to one model. Create it with New;
// Close stops it.
type Batcher struct {
	model  rt.Model
	cfg    Config
	target int64 // rows at which a batch is dispatched without waiting
	queue  chan *request
	sem    chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// callers counts Predict calls waiting for the batcher, queued or
	// being evaluated.
	callers atomic.Int64
	// cost is a moving average of the nanoseconds one request's evaluation
	// takes when it is evaluated alone; zero until measured.
	cost atomic.Int64
	// evaluations counts evaluations of one request, so that only one in
	// costSampleEvery is timed once the cost is known: on a model of a
	// few microseconds the two clock reads are a few percent of the work.
	evaluations atomic.Uint32
}

const costSampleEvery = 16

type request struct {
	ctx      context.Context
	queued   trace.Span // nil without a tracer
	inputs   []rt.Tensor
	rows     int64
	enqueued time.Time
	done     chan result
}

type result struct {
	outputs []rt.Tensor
	err     error
}

// New starts a batcher in front of model.
func New(model rt.Model, cfg Config) *Batcher {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = runtime.GOMAXPROCS(0)
	}
	if cfg.MergeAbove == 0 {
		cfg.MergeAbove = DefaultMergeAbove
	}
	target := cfg.MaxBatchSize
	if len(cfg.PreferredSizes) > 0 {
		target = slices.Max(cfg.PreferredSizes)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Batcher{
		model:  model,
		cfg:    cfg,
		target: target,
		// Unbuffered: a send succeeds only while the collector runs, so no
		// request can be stranded in a buffer after Close.
		queue:  make(chan *request),
		sem:    make(chan struct{}, cfg.MaxInFlight),
		ctx:    ctx,
		cancel: cancel,
	}
	b.wg.Add(1)
	go b.collect()
	return b
}

// Close stops collecting, waits for the batches in flight, and makes later
// Predict calls evaluate directly, so that a model evicted while requests
// still hold it keeps answering them.
func (b *Batcher) Close() {
	b.cancel()
	b.wg.Wait()
}

// Predict evaluates inputs, possibly merged with other concurrent calls.
func (b *Batcher) Predict(ctx context.Context, inputs []rt.Tensor) ([]rt.Tensor, error) {
	n := rows(inputs)
	if n <= 0 || n >= b.cfg.MaxBatchSize {
		return b.predict(ctx, inputs)
	}
	if !b.merging() {
		// Too cheap for merging to pay: every caller evaluates directly.
		// Not counted as a caller, so that the collector does not wait for
		// it.
		return b.direct(ctx, inputs, n)
	}
	defer b.callers.Add(-1)
	if b.callers.Add(1) == 1 && b.ctx.Err() == nil {
		// Alone in the batcher: nobody to merge with, so skip the hand-offs
		// to the collector and evaluator goroutines. Callers arriving
		// meanwhile see this one and queue for merging.
		return b.direct(ctx, inputs, n)
	}
	req := &request{ctx: ctx, inputs: inputs, rows: n, enqueued: time.Now(), done: make(chan result, 1)}
	if b.cfg.Tracer != nil && trace.SpanFromContext(ctx).IsRecording() {
		_, req.queued = b.cfg.Tracer.Start(ctx, "inference.queue", trace.WithAttributes(attribute.Int64("inference.rows", n)))
		defer req.queued.End() // a no-op when evaluate ended it
	}
	select {
	case b.queue <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.ctx.Done():
		return b.predict(ctx, inputs)
	}
	select {
	case res := <-req.done:
		return res.outputs, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// direct evaluates a request on its caller's goroutine, observed as a
// batch of its own that did not wait.
func (b *Batcher) direct(ctx context.Context, inputs []rt.Tensor, rows int64) ([]rt.Tensor, error) {
	if b.cfg.ObserveQueue != nil {
		b.cfg.ObserveQueue(0)
	}
	if b.cfg.ObserveBatch != nil {
		b.cfg.ObserveBatch(rows)
	}
	return b.predictAlone(ctx, inputs)
}

// merging reports whether concurrent requests should queue to be merged:
// always when so configured, otherwise when one request's measured
// evaluation cost is at least MergeAbove.
func (b *Batcher) merging() bool {
	return b.cfg.MergeAbove < 0 || time.Duration(b.cost.Load()) >= b.cfg.MergeAbove
}

// predictAlone evaluates one request's inputs and folds the time taken
// (of one evaluation in costSampleEvery) into the cost average. The
// average falls fast (weight 1/4) and rises by at most an eighth a sample
// (weight 1/8, each sample capped at twice the average): a thread
// descheduled mid-evaluation on a loaded machine measures a wall time far
// above the evaluation's cost, and a few of those must not flip a cheap
// model into queueing, while requests that really grow (1 row, then 500)
// reach the threshold within some ten timed evaluations.
func (b *Batcher) predictAlone(ctx context.Context, inputs []rt.Tensor) ([]rt.Tensor, error) {
	if b.evaluations.Add(1)%costSampleEvery != 0 && b.cost.Load() != 0 {
		return b.predict(ctx, inputs)
	}
	start := time.Now()
	out, err := b.predict(ctx, inputs)
	if err == nil {
		took := int64(time.Since(start))
		b.cost.Store(nextCost(b.cost.Load(), took))
	}
	return out, err
}

// nextCost folds one measured evaluation (ns) into the average old.
func nextCost(old, took int64) int64 {
	switch {
	case old == 0:
		return took
	case took < old:
		return old - (old-took)/4
	default:
		return old + (min(took, 2*old)-old)/8
	}
}

// Cost is the measured time one request's evaluation takes alone (a moving
// average), zero before the first.
func (b *Batcher) Cost() time.Duration { return time.Duration(b.cost.Load()) }

// predict runs the model, turning a panic into an error: evaluations run
// on the batcher's goroutines, where a caller's recover cannot reach.
func (b *Batcher) predict(ctx context.Context, inputs []rt.Tensor) (out []rt.Tensor, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("model panicked: %v", p)
		}
	}()
	return b.model.Predict(ctx, inputs)
}

// collect forms batches: it waits for a first request, then gathers more
// until the batch reaches the target size, the oldest request has waited
// MaxQueueDelay, or no request is waiting at a preferred size. A batch is
// sent at once when no other caller is in the batcher.
func (b *Batcher) collect() {
	defer b.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var batch []*request
	var total int64
	for {
		if len(batch) == 0 {
			select {
			case r := <-b.queue:
				batch, total = append(batch, r), r.rows
			case <-b.ctx.Done():
				return
			}
			timer.Reset(b.cfg.MaxQueueDelay - time.Since(batch[0].enqueued))
		}
		// Unlike Triton, a request alone in an idle batcher goes at once:
		// no caller could join it, so waiting would only add the delay to
		// every request of a lone client. Under concurrency the batcher
		// waits as configured.
		dispatch := total >= b.target || b.callers.Load() <= int64(len(batch))
		for !dispatch {
			if b.preferred(total) || b.cfg.MaxQueueDelay <= 0 {
				// Take only what is already waiting.
				select {
				case r := <-b.queue:
					batch, total, dispatch = b.add(batch, total, r)
				default:
					dispatch = true
				}
				continue
			}
			select {
			case r := <-b.queue:
				batch, total, dispatch = b.add(batch, total, r)
			case <-timer.C:
				dispatch = true
			case <-b.ctx.Done():
				dispatch = true
			}
		}
		timer.Stop()
		// A request that did not fit is kept for the next batch.
		var next *request
		if total > b.cfg.MaxBatchSize {
			next = batch[len(batch)-1]
			batch, total = batch[:len(batch)-1], total-next.rows
		}
		b.run(batch, total)
		batch, total = nil, 0
		if next != nil {
			batch, total = append(batch, next), next.rows
			timer.Reset(b.cfg.MaxQueueDelay - time.Since(next.enqueued))
		}
		if b.ctx.Err() != nil && len(batch) == 0 {
			return
		}
	}
}

// add appends r and reports whether the batch is now due: at its target
// size, or holding every caller there is.
func (b *Batcher) add(batch []*request, total int64, r *request) ([]*request, int64, bool) {
	batch, total = append(batch, r), total+r.rows
	return batch, total, total >= b.target || b.callers.Load() <= int64(len(batch))
}

func (b *Batcher) preferred(total int64) bool {
	return slices.Contains(b.cfg.PreferredSizes, total)
}

// run evaluates one batch on its own goroutine once an evaluation slot is
// free. Waiting for the slot here is deliberate: requests that arrive
// meanwhile queue up and form the next, larger batch.
func (b *Batcher) run(batch []*request, total int64) {
	b.sem <- struct{}{}
	b.wg.Add(1)
	go func() {
		defer func() { <-b.sem; b.wg.Done() }()
		b.evaluate(batch, total)
	}()
}

func (b *Batcher) evaluate(batch []*request, total int64) {
	now := time.Now()
	live := batch[:0:0]
	for _, r := range batch {
		if r.queued != nil {
			r.queued.End()
		}
		if err := r.ctx.Err(); err != nil {
			r.done <- result{err: err}
			continue
		}
		if b.cfg.ObserveQueue != nil {
			b.cfg.ObserveQueue(now.Sub(r.enqueued))
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	if len(live) != len(batch) {
		total = 0
		for _, r := range live {
			total += r.rows
		}
	}
	if b.cfg.ObserveBatch != nil {
		b.cfg.ObserveBatch(total)
	}
	if len(live) == 1 {
		out, err := b.predictAlone(live[0].ctx, live[0].inputs)
		live[0].done <- result{outputs: out, err: err}
		return
	}
	inputs, ok := merge(live, total)
	if !ok {
		for _, r := range live {
			out, err := b.predict(r.ctx, r.inputs)
			r.done <- result{outputs: out, err: err}
		}
		return
	}
	// The merged batch belongs to no single caller: one caller giving up
	// must not cancel the others' work.
	ctx := context.WithoutCancel(live[0].ctx)
	// Nothing is built for a batch of requests that no one traces.
	if b.cfg.Tracer != nil && anyRecording(live) {
		links := make([]trace.Link, 0, len(live))
		for _, r := range live {
			links = append(links, trace.Link{SpanContext: trace.SpanContextFromContext(r.ctx)})
		}
		var span trace.Span
		ctx, span = b.cfg.Tracer.Start(ctx, "inference.batch", trace.WithLinks(links...),
			trace.WithAttributes(attribute.Int64("inference.rows", total), attribute.Int("inference.requests", len(live))))
		defer span.End()
	}
	outputs, err := b.predict(ctx, inputs)
	if err != nil {
		// One bad request must not fail its neighbours: retry each alone,
		// so that the error reaches only the request it belongs to.
		for _, r := range live {
			out, err := b.predict(r.ctx, r.inputs)
			r.done <- result{outputs: out, err: err}
		}
		return
	}
	sizes := make([]int64, len(live))
	for i, r := range live {
		sizes[i] = r.rows
	}
	parts, err := split(outputs, sizes, total)
	for i, r := range live {
		if err != nil {
			r.done <- result{err: err}
			continue
		}
		r.done <- result{outputs: parts[i]}
	}
}

// anyRecording reports whether a span records in any of the requests'
// contexts.
func anyRecording(live []*request) bool {
	for _, r := range live {
		if trace.SpanFromContext(r.ctx).IsRecording() {
			return true
		}
	}
	return false
}
