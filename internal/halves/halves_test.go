package halves

import (
	"context"
	"errors"
	"testing"
)

func TestRunCoversEveryItemOnce(t *testing.T) {
	for _, c := range []struct {
		n, min int
		parts  int
	}{{0, 1, 1}, {5, 10, 1}, {10, 10, 2}, {11, 2, 2}} {
		seen := make([]int, c.n)
		var used [2]bool
		err := Run(context.Background(), c.n, c.min, func(part, lo, hi int) error {
			used[part] = true
			for i := lo; i < hi; i++ {
				seen[i]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range seen {
			if s != 1 {
				t.Fatalf("n=%d: item %d visited %d times", c.n, i, s)
			}
		}
		if got := map[bool]int{false: 1, true: 2}[used[1]]; got != c.parts {
			t.Errorf("n=%d min=%d: %d parts, want %d", c.n, c.min, got, c.parts)
		}
	}
}

func TestRunReportsErrors(t *testing.T) {
	boom := errors.New("boom")
	err := Run(context.Background(), 100, 2, func(part, _, _ int) error {
		if part == 1 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	err = Run(ctx, 100, 2, func(int, int, int) error { called = true; return nil })
	if !errors.Is(err, context.Canceled) || called {
		t.Fatalf("cancelled: err %v, called %v", err, called)
	}
}
