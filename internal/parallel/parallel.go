// Package parallel is the control plane's one fan-out helper: a pass over n
// items is cut into contiguous spans, one per core (GOMAXPROCS), run side by
// side under errgroup.WithContext, so that results written per span and
// joined in span order depend neither on the schedule nor on the number of
// cores.
package parallel

import (
	"context"
	"runtime"

	"golang.org/x/sync/errgroup"
)

// Parts returns how many spans a pass over n items is cut into: one when n
// is below below (starting a goroutine would cost more than it saves),
// otherwise GOMAXPROCS, but never more than n.
func Parts(n, below int) int {
	if n < below || n <= 1 {
		return 1
	}
	return min(runtime.GOMAXPROCS(0), n)
}

// Even cuts n items into parts contiguous spans [lo, hi) of sizes that
// differ by at most one, the first span holding the first items.
func Even(n, parts int) [][2]int {
	parts = max(1, parts)
	out := make([][2]int, parts)
	for p := range parts {
		out[p] = [2]int{p * n / parts, (p + 1) * n / parts}
	}
	return out
}

// Spans calls f(part, lo, hi) for the spans of Even(n, parts), as Run does.
func Spans(ctx context.Context, n, parts int, f func(part, lo, hi int) error) error {
	return Run(ctx, Even(n, parts), f)
}

// Run calls f(part, lo, hi) for every span of spans concurrently, or on the
// caller's goroutine when there is only one. f must write only the items of
// its span and state kept per part, which the caller joins in part order.
// The first error is returned; a span not yet started when ctx is done is
// skipped with ctx's error.
func Run(ctx context.Context, spans [][2]int, f func(part, lo, hi int) error) error {
	if len(spans) == 1 {
		return f(0, spans[0][0], spans[0][1])
	}
	g, ctx := errgroup.WithContext(ctx)
	for part, s := range spans {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return f(part, s[0], s[1])
		})
	}
	return g.Wait()
}

// Each calls f(ctx, i) for every i in [0, n) on up to workers goroutines at
// a time, in order on the caller's goroutine when workers is 1 or less. The
// calls must touch disjoint data. The first error cancels ctx and is
// returned; calls not yet started then are skipped.
func Each(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	if workers <= 1 || n <= 1 {
		for i := range n {
			if err := f(ctx, i); err != nil {
				return err
			}
		}
		return nil
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for i := range n {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return f(ctx, i)
		})
	}
	return g.Wait()
}
