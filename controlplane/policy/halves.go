package policy

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// splitAbove is the number of documents of a kind from which a pass over
// them (cross-document defaults, validation) runs in two halves side by
// side, one per core of the machines the control plane runs on: below it,
// starting a goroutine costs more than it saves.
const splitAbove = 512

// inHalves calls f(0, 0, n/2) and f(1, n/2, n) side by side, or f(0, 0, n)
// alone when n is below splitAbove. f must write only its own part's
// documents and state kept per part (indexed by part), which the caller
// then joins in part order: so the result does not depend on the schedule.
// It fails only when ctx is done before a part starts.
func inHalves(ctx context.Context, n int, f func(part, lo, hi int)) error {
	if n < splitAbove {
		f(0, 0, n)
		return nil
	}
	g, ctx := errgroup.WithContext(ctx)
	for part, r := range [2][2]int{{0, n / 2}, {n / 2, n}} {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			f(part, r[0], r[1])
			return nil
		})
	}
	return g.Wait()
}
