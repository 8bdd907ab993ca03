package parallel

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
)

func TestSpansCoverEveryItemOnce(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		n, below  int
		wantParts int
	}{
		{"empty", 0, 1, 1},
		{"below the threshold", 5, 10, 1},
		{"one item", 1, 0, 1},
		{"every core", 1000, 10, runtime.GOMAXPROCS(0)},
		{"more cores than items", 2, 0, min(2, runtime.GOMAXPROCS(0))},
	} {
		t.Run(c.name, func(t *testing.T) {
			parts := Parts(c.n, c.below)
			if parts != c.wantParts {
				t.Fatalf("Parts(%d, %d) = %d, want %d", c.n, c.below, parts, c.wantParts)
			}
			seen := make([]int32, c.n)
			used := make([]atomic.Bool, parts)
			err := Spans(context.Background(), c.n, parts, func(part, lo, hi int) error {
				used[part].Store(true)
				for i := lo; i < hi; i++ {
					atomic.AddInt32(&seen[i], 1)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range seen {
				if s != 1 {
					t.Fatalf("item %d visited %d times", i, s)
				}
			}
			for p := range used {
				if !used[p].Load() {
					t.Errorf("part %d never ran", p)
				}
			}
		})
	}
}

func TestEvenKeepsOrderAndBalance(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ n, parts int }{{10, 3}, {7, 7}, {3, 1}, {100, 4}} {
		sp := Even(c.n, c.parts)
		if len(sp) != c.parts || sp[0][0] != 0 || sp[len(sp)-1][1] != c.n {
			t.Fatalf("Even(%d, %d) = %v", c.n, c.parts, sp)
		}
		for i := 1; i < len(sp); i++ {
			if sp[i][0] != sp[i-1][1] {
				t.Fatalf("Even(%d, %d) = %v: gap or overlap", c.n, c.parts, sp)
			}
		}
		for _, s := range sp {
			if size := s[1] - s[0]; size < c.n/c.parts || size > c.n/c.parts+1 {
				t.Fatalf("Even(%d, %d) = %v: span of %d items", c.n, c.parts, sp, size)
			}
		}
	}
}

func TestErrorsAndCancellation(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	err := Spans(context.Background(), 100, 2, func(part, _, _ int) error {
		if part == 1 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Spans: err = %v, want boom", err)
	}
	err = Each(context.Background(), 100, 2, func(_ context.Context, i int) error {
		if i == 50 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Each: err = %v, want boom", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var called atomic.Bool
	err = Spans(ctx, 100, 2, func(int, int, int) error { called.Store(true); return nil })
	if !errors.Is(err, context.Canceled) || called.Load() {
		t.Fatalf("cancelled Spans: err %v, called %v", err, called.Load())
	}
	err = Each(ctx, 100, 2, func(context.Context, int) error { called.Store(true); return nil })
	if !errors.Is(err, context.Canceled) || called.Load() {
		t.Fatalf("cancelled Each: err %v, called %v", err, called.Load())
	}
}

func TestEachVisitsEveryIndexOnce(t *testing.T) {
	t.Parallel()
	for _, workers := range []int{1, 2, 8} {
		seen := make([]int32, 300)
		if err := Each(context.Background(), len(seen), workers, func(_ context.Context, i int) error {
			atomic.AddInt32(&seen[i], 1)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for i, s := range seen {
			if s != 1 {
				t.Fatalf("workers %d: index %d visited %d times", workers, i, s)
			}
		}
	}
}
