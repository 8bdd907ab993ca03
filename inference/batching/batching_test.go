package batching

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"

	rt "github.com/maestro-ml/maestro/inference/runtime"
)

// doubler returns y = 2x row by row and records the rows of every call. A
// NaN input is the caller's error. A call whose first value is blockValue
// reports on entered and waits for release.
type doubler struct {
	mu      sync.Mutex
	calls   []int64
	entered chan struct{}
	release chan struct{}
}

const blockValue = -12345

func newDoubler() *doubler {
	return &doubler{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (d *doubler) Predict(_ context.Context, in []rt.Tensor) ([]rt.Tensor, error) {
	x := in[0].Data.([]float32)
	if len(x) > 0 && x[0] == blockValue {
		d.entered <- struct{}{}
		<-d.release
	}
	d.mu.Lock()
	d.calls = append(d.calls, in[0].Shape[0])
	d.mu.Unlock()
	y := make([]float32, len(x))
	for i, v := range x {
		if math.IsNaN(float64(v)) {
			return nil, fmt.Errorf("NaN at %d: %w", i, rt.ErrInvalidInput)
		}
		y[i] = 2 * v
	}
	return []rt.Tensor{{Name: "y", Datatype: rt.FP32, Shape: slices.Clone(in[0].Shape), Data: y}}, nil
}

func (d *doubler) MemoryBytes() int64 { return 0 }

func (d *doubler) rows() []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

func input(rows, width int, base float32) []rt.Tensor {
	x := make([]float32, rows*width)
	for i := range x {
		x[i] = base + float32(i)
	}
	return []rt.Tensor{{Name: "x", Datatype: rt.FP32, Shape: []int64{int64(rows), int64(width)}, Data: x}}
}

// newBatcher starts a batcher that always merges unless cfg says
// otherwise: the test models are cheap, and these tests are about merging.
func newBatcher(t *testing.T, m rt.Model, cfg Config) *Batcher {
	t.Helper()
	if cfg.MergeAbove == 0 {
		cfg.MergeAbove = -1
	}
	b := New(m, cfg)
	t.Cleanup(b.Close)
	return b
}

// occupy sends one request that blocks inside the model, so that the
// batcher is busy and holds the requests that follow for merging, as under
// load. Calling the returned func lets it finish and checks its answer.
func occupy(t *testing.T, b *Batcher, m *doubler) func() {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		in := input(1, 1, blockValue)
		out, err := b.Predict(context.Background(), in)
		if err == nil {
			err = checkDoubled(in, out)
		}
		done <- err
	}()
	select {
	case <-m.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the occupying request never reached the model")
	}
	return func() {
		close(m.release)
		if err := <-done; err != nil {
			t.Errorf("occupying request: %v", err)
		}
	}
}

func TestMergesConcurrentRequestsAndSplitsResults(t *testing.T) {
	tests := map[string]struct {
		cfg      Config
		requests int
		rows     int
		check    func(t *testing.T, calls []int64)
	}{
		"preferred size reached": {
			// The delay is far longer than the test: the batch can only be
			// dispatched by reaching its preferred size.
			cfg:      Config{MaxBatchSize: 64, MaxQueueDelay: time.Hour, PreferredSizes: []int64{8}},
			requests: 8, rows: 1,
			check: func(t *testing.T, calls []int64) {
				if !slices.Equal(calls, []int64{8}) {
					t.Errorf("model calls %v, want one batch of 8", calls)
				}
			},
		},
		"max batch size reached": {
			cfg:      Config{MaxBatchSize: 6, MaxQueueDelay: time.Hour},
			requests: 3, rows: 2,
			check: func(t *testing.T, calls []int64) {
				if !slices.Equal(calls, []int64{6}) {
					t.Errorf("model calls %v, want one batch of 6", calls)
				}
			},
		},
		"overflow starts the next batch": {
			cfg:      Config{MaxBatchSize: 8, MaxQueueDelay: 20 * time.Millisecond},
			requests: 4, rows: 3,
			check: func(t *testing.T, calls []int64) {
				var sum int64
				for _, c := range calls {
					if c > 8 {
						t.Errorf("batch of %d rows over the max of 8", c)
					}
					sum += c
				}
				if sum != 12 || len(calls) < 2 {
					t.Errorf("model calls %v, want 12 rows in at least 2 batches", calls)
				}
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := newDoubler()
			tc.cfg.MaxInFlight = 2
			b := newBatcher(t, m, tc.cfg)
			release := occupy(t, b, m)
			g, ctx := errgroup.WithContext(context.Background())
			for i := range tc.requests {
				g.Go(func() error {
					in := input(tc.rows, 3, float32(100*i))
					out, err := b.Predict(ctx, in)
					if err != nil {
						return err
					}
					return checkDoubled(in, out)
				})
			}
			if err := g.Wait(); err != nil {
				t.Fatal(err)
			}
			calls := m.rows() // before the occupier, which records on release
			release()
			tc.check(t, calls)
		})
	}
}

func TestIdleBatcherDoesNotHoldALoneRequest(t *testing.T) {
	m := newDoubler()
	// An hour's delay: only the idle rule can answer in time.
	b := newBatcher(t, m, Config{MaxBatchSize: 64, MaxQueueDelay: time.Hour, PreferredSizes: []int64{8}})
	for i := range 3 {
		in := input(2, 3, float32(i))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := b.Predict(ctx, in)
		cancel()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if err := checkDoubled(in, out); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDelayDispatchesALoneRequest(t *testing.T) {
	m := newDoubler()
	b := newBatcher(t, m, Config{MaxBatchSize: 64, MaxQueueDelay: time.Millisecond})
	in := input(2, 3, 1)
	out, err := b.Predict(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkDoubled(in, out); err != nil {
		t.Fatal(err)
	}
}

func TestBadRequestDoesNotFailItsNeighbours(t *testing.T) {
	m := newDoubler()
	var batches []int64
	var mu sync.Mutex
	b := newBatcher(t, m, Config{MaxBatchSize: 64, MaxQueueDelay: time.Hour, PreferredSizes: []int64{4}, MaxInFlight: 2,
		ObserveBatch: func(n int64) { mu.Lock(); batches = append(batches, n); mu.Unlock() }})
	release := occupy(t, b, m)
	defer release()
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			in := input(1, 2, float32(i))
			if i == 2 {
				in[0].Data.([]float32)[1] = float32(math.NaN())
			}
			out, err := b.Predict(context.Background(), in)
			if err == nil {
				err = checkDoubled(in, out)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i == 2 {
			if !errors.Is(err, rt.ErrInvalidInput) {
				t.Errorf("bad request: %v, want ErrInvalidInput", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// The occupier's batch of 1 comes first.
	if !slices.Equal(batches, []int64{1, 4}) {
		t.Errorf("batches %v, want the occupier's and the 4 requests merged once", batches)
	}
}

func TestIncompatibleRequestsRunSeparately(t *testing.T) {
	m := newDoubler()
	b := newBatcher(t, m, Config{MaxBatchSize: 64, MaxQueueDelay: time.Hour, PreferredSizes: []int64{2}, MaxInFlight: 2})
	release := occupy(t, b, m)
	g, ctx := errgroup.WithContext(context.Background())
	for i := range 2 {
		g.Go(func() error {
			in := input(1, 2+i, 1) // rows of different widths cannot merge
			out, err := b.Predict(ctx, in)
			if err != nil {
				return err
			}
			return checkDoubled(in, out)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	calls := m.rows()
	release()
	if !slices.Equal(calls, []int64{1, 1}) {
		t.Errorf("model calls %v, want two separate calls", calls)
	}
}

func TestCancelledCallerReturns(t *testing.T) {
	m := newDoubler()
	b := newBatcher(t, m, Config{MaxBatchSize: 64, MaxQueueDelay: time.Hour, PreferredSizes: []int64{8}})
	// With the model busy, the next request queues for an hour's company.
	release := occupy(t, b, m)
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.Predict(ctx, input(1, 2, 0))
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled caller is still waiting for its batch")
	}
}

func TestPredictAfterCloseEvaluatesDirectly(t *testing.T) {
	m := newDoubler()
	b := New(m, Config{MaxBatchSize: 64, MaxQueueDelay: time.Hour, PreferredSizes: []int64{8}})
	b.Close()
	in := input(1, 2, 5)
	out, err := b.Predict(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkDoubled(in, out); err != nil {
		t.Fatal(err)
	}
}

func TestLargeRequestsBypassTheQueue(t *testing.T) {
	m := newDoubler()
	b := newBatcher(t, m, Config{MaxBatchSize: 4, MaxQueueDelay: time.Hour})
	in := input(4, 2, 0)
	out, err := b.Predict(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkDoubled(in, out); err != nil {
		t.Fatal(err)
	}
}

// checkDoubled asserts that out is 2x in, for this caller's rows only.
func checkDoubled(in, out []rt.Tensor) error {
	x, y := in[0].Data.([]float32), out[0].Data.([]float32)
	if !slices.Equal(out[0].Shape, in[0].Shape) || len(y) != len(x) {
		return fmt.Errorf("output shape %v for input %v", out[0].Shape, in[0].Shape)
	}
	for i := range x {
		if y[i] != 2*x[i] {
			return fmt.Errorf("row element %d: got %v, want %v", i, y[i], 2*x[i])
		}
	}
	return nil
}

func TestTracesQueueAndMergedBatch(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	m := newDoubler()
	b := newBatcher(t, m, Config{MaxBatchSize: 64, MaxQueueDelay: time.Hour, PreferredSizes: []int64{2}, MaxInFlight: 2,
		Tracer: tp.Tracer("test")})
	release := occupy(t, b, m)
	g, ctx := errgroup.WithContext(context.Background())
	for i := range 2 {
		g.Go(func() error {
			ctx, span := tp.Tracer("test").Start(ctx, fmt.Sprintf("caller-%d", i))
			defer span.End()
			_, err := b.Predict(ctx, input(1, 2, float32(i)))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	release()
	var queues, batches []sdktrace.ReadOnlySpan
	callers := map[string]bool{}
	for _, s := range rec.Ended() {
		switch {
		case s.Name() == "inference.queue":
			queues = append(queues, s)
		case s.Name() == "inference.batch":
			batches = append(batches, s)
		default:
			callers[s.SpanContext().SpanID().String()] = true
		}
	}
	if len(queues) != 2 || len(batches) != 1 {
		t.Fatalf("%d queue and %d batch spans, want 2 and 1", len(queues), len(batches))
	}
	for _, q := range queues {
		if !callers[q.Parent().SpanID().String()] {
			t.Errorf("queue span's parent is not a caller's span")
		}
	}
	if links := batches[0].Links(); len(links) != 2 || !callers[links[0].SpanContext.SpanID().String()] || !callers[links[1].SpanContext.SpanID().String()] {
		t.Errorf("batch span links %v, want both callers", links)
	}
}

// countingTracer counts the spans it is asked to start.
type countingTracer struct {
	trace.Tracer
	starts atomic.Int64
}

func (c *countingTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	c.starts.Add(1)
	return c.Tracer.Start(ctx, name, opts...)
}

// TestUntracedBatchBuildsNoSpan merges requests that no one traces: with
// a tracer configured, the batcher asks it for nothing.
func TestUntracedBatchBuildsNoSpan(t *testing.T) {
	tracer := &countingTracer{Tracer: noop.NewTracerProvider().Tracer("test")}
	m := newDoubler()
	b := newBatcher(t, m, Config{MaxBatchSize: 64, MaxQueueDelay: time.Hour, PreferredSizes: []int64{2}, MaxInFlight: 2,
		Tracer: tracer})
	release := occupy(t, b, m)
	g, ctx := errgroup.WithContext(context.Background())
	for i := range 2 {
		g.Go(func() error {
			_, err := b.Predict(ctx, input(1, 2, float32(i)))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	release()
	if n := tracer.starts.Load(); n != 0 {
		t.Errorf("%d spans started for requests no one traces, want none", n)
	}
}

// panicky panics on a batch of more than one row, as a buggy runtime might.
type panicky struct{ doubler }

func (p *panicky) Predict(ctx context.Context, in []rt.Tensor) ([]rt.Tensor, error) {
	if len(in[0].Data.([]float32)) > 0 && in[0].Data.([]float32)[0] == blockValue {
		return p.doubler.Predict(ctx, in)
	}
	panic("runtime bug")
}

func TestModelPanicBecomesAnError(t *testing.T) {
	m := &panicky{doubler: *newDoubler()}
	b := newBatcher(t, m, Config{MaxBatchSize: 64, MaxQueueDelay: time.Hour, PreferredSizes: []int64{2}, MaxInFlight: 2})
	// Merged batches run on the batcher's own goroutines.
	release := occupy(t, b, &m.doubler)
	defer release()
	g, ctx := errgroup.WithContext(context.Background())
	errs := make([]error, 2)
	for i := range 2 {
		g.Go(func() error {
			_, errs[i] = b.Predict(ctx, input(1, 2, float32(i)))
			return nil
		})
	}
	_ = g.Wait()
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "model panicked: runtime bug") {
			t.Errorf("request %d: %v, want the panic as an error", i, err)
		}
	}
}

// TestMergesOnlyWhenEvaluationCostPays: concurrent requests queue for
// merging only once the model's measured evaluation cost reaches
// MergeAbove; below it, each is evaluated at once on its caller's
// goroutine even while another evaluation is in progress.
func TestMergesOnlyWhenEvaluationCostPays(t *testing.T) {
	tests := map[string]struct {
		mergeAbove time.Duration
		warm       bool // one lone request first, so that the cost is measured
		want       []int64
	}{
		// Any evaluation takes less than an hour: no merging.
		"cheap model":         {mergeAbove: time.Hour, warm: true, want: []int64{1, 1, 1, 1, 1, 1, 1, 1}},
		"costly enough model": {mergeAbove: time.Nanosecond, warm: true, want: []int64{8}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := newDoubler()
			// An hour's delay: only reaching the preferred size of 8, or
			// not queueing at all, answers in time.
			b := newBatcher(t, m, Config{MaxBatchSize: 64, MaxQueueDelay: time.Hour, PreferredSizes: []int64{8},
				MaxInFlight: 2, MergeAbove: tc.mergeAbove})
			if tc.warm {
				if _, err := b.Predict(context.Background(), input(1, 3, 1)); err != nil {
					t.Fatal(err)
				}
				if b.Cost() <= 0 {
					t.Fatalf("cost %v after a lone evaluation, want it measured", b.Cost())
				}
			}
			release := occupy(t, b, m)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			g, ctx := errgroup.WithContext(ctx)
			for i := range 8 {
				g.Go(func() error {
					in := input(1, 3, float32(10*i))
					out, err := b.Predict(ctx, in)
					if err != nil {
						return err
					}
					return checkDoubled(in, out)
				})
			}
			if err := g.Wait(); err != nil {
				t.Fatal(err)
			}
			calls := m.rows()
			release()
			if tc.warm {
				calls = calls[1:] // the warm-up request
			}
			if !slices.Equal(calls, tc.want) {
				t.Errorf("model calls %v, want %v", calls, tc.want)
			}
		})
	}
}

// TestCostAverageResistsDescheduledOutliers: evaluations that measure far
// above a cheap model's cost (its thread descheduled on a busy machine)
// raise the average slowly, while a cheaper measure lowers it fast.
func TestCostAverageResistsDescheduledOutliers(t *testing.T) {
	const us = int64(time.Microsecond)
	tests := map[string]struct {
		start   int64
		samples []int64
		atMost  int64
		atLeast int64
	}{
		"first measure is taken as is": {start: 0, samples: []int64{3 * us}, atLeast: 3 * us, atMost: 3 * us},
		"five 10 ms outliers keep a 3 us model under 10 us": {start: 3 * us,
			samples: slices.Repeat([]int64{10_000 * us}, 5), atLeast: 3 * us, atMost: 10 * us},
		"a 1-row model sent 500-row requests crosses 10 us within 12 samples": {start: 3 * us,
			samples: slices.Repeat([]int64{650 * us}, 12), atLeast: 10 * us, atMost: 650 * us},
		"a cheaper measure pulls the average down": {start: 40 * us,
			samples: []int64{2 * us, 2 * us, 2 * us, 2 * us, 2 * us, 2 * us, 2 * us, 2 * us}, atLeast: 2 * us, atMost: 10 * us},
		"a lasting rise is followed": {start: 3 * us,
			samples: slices.Repeat([]int64{100 * us}, 40), atLeast: 50 * us, atMost: 100 * us},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := tc.start
			for _, s := range tc.samples {
				c = nextCost(c, s)
			}
			if c < tc.atLeast || c > tc.atMost {
				t.Errorf("average %v, want within [%v, %v]", time.Duration(c), time.Duration(tc.atLeast), time.Duration(tc.atMost))
			}
		})
	}
}
