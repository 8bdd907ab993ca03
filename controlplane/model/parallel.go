package model

import (
	"context"
	"runtime"

	"github.com/maestro-ml/maestro/internal/parallel"
)

// Build of a large mesh runs on every core: the plaintext clusters, the
// routes' resolution and the node groups are each cut into spans that
// goroutines build side by side. A span's builder (a fork) reads what is
// shared (the policy, the services' clusters, the resolved routes) and
// writes only its own output, arenas, lookup positions, extra clusters and
// secrets. The forks' extras are joined in span order, the first of a name
// winning, which is the order one goroutine would have made them in, so the
// Mesh does not depend on how many goroutines built it.

// parallelMin is the size (routes plus service versions) below which one
// goroutine builds the whole mesh: each fork starts its own slab chunks,
// which would cost a small mesh more than a second core saves.
const parallelMin = 2048

// workersFor returns how many goroutines Build uses for a mesh of routes
// routes and clusters service versions.
func workersFor(routes, clusters int) int {
	if routes+clusters < parallelMin {
		return 1
	}
	return runtime.GOMAXPROCS(0)
}

// fork returns a builder sharing b's read-only state, with state of its
// own for everything a span writes.
func (b *builder) fork() *builder {
	return &builder{pm: b.pm, opts: b.opts, td: b.td, strict: b.strict, workers: 1,
		sidecarOf: b.sidecarOf, extraSeen: map[string]bool{}, needSecrets: map[string]bool{},
		// Copies: find moves an index's last-hit position.
		services: b.services, routes: b.routes,
		svcs: b.svcs, plain: b.plain, resolved: b.resolved}
}

// join adds the extra clusters and secrets f made to b's.
func (b *builder) join(f *builder) {
	for _, c := range f.extra {
		b.addExtra(c)
	}
	for n := range f.needSecrets {
		b.needSecrets[n] = true
	}
}

// inSpans calls do for spans [lo, hi) that together cover n items of the
// given weights, each span with a fork of its own, concurrently. With one
// worker (or one item) it calls do once, with b itself, and returns nil;
// otherwise it returns the forks in span order, for join.
func (b *builder) inSpans(n int, weight func(i int) int, do func(f *builder, lo, hi int)) []*builder {
	if b.workers <= 1 || n <= 1 {
		do(b, 0, n)
		return nil
	}
	sp := spans(n, weight, b.workers)
	forks := make([]*builder, len(sp))
	for i := range sp {
		forks[i] = b.fork()
	}
	// A span neither fails nor waits on anything, and Run returns only
	// once every span is done, so none outlives the call.
	_ = parallel.Run(context.Background(), sp, func(part, lo, hi int) error {
		do(forks[part], lo, hi)
		return nil
	})
	return forks
}

// spans cuts n items of the given weights into at most k contiguous,
// non-empty spans of about equal total weight.
func spans(n int, weight func(i int) int, k int) [][2]int {
	total := 0
	for i := range n {
		total += weight(i)
	}
	out := make([][2]int, 0, k)
	lo, acc := 0, 0
	for i := range n {
		acc += weight(i)
		// Cut once the spans so far reach their share of the total.
		if len(out) < k-1 && acc*k >= total*(len(out)+1) {
			out = append(out, [2]int{lo, i + 1})
			lo = i + 1
		}
	}
	if lo < n {
		out = append(out, [2]int{lo, n})
	}
	return out
}
