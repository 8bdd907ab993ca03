// Package halves runs a pass over n items as two halves side by side, one
// per core of the two-core machines the control plane is sized for, with
// results that do not depend on the schedule.
package halves

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// Run calls f(0, 0, n/2) and f(1, n/2, n) concurrently, or f(0, 0, n) alone
// when n is below min (starting a goroutine would cost more than it saves).
// f must write only the items of its range and state kept per part, which
// the caller joins in part order. The first error is returned; a part not
// yet started when ctx is done is skipped with ctx's error.
func Run(ctx context.Context, n, min int, f func(part, lo, hi int) error) error {
	if n < min {
		return f(0, 0, n)
	}
	g, ctx := errgroup.WithContext(ctx)
	for part, r := range [2][2]int{{0, n / 2}, {n / 2, n}} {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return f(part, r[0], r[1])
		})
	}
	return g.Wait()
}
