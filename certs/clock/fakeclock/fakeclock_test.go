package fakeclock

import (
	"context"
	"testing"
	"time"
)

func TestTimersFireOnlyWhenDue(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(start)
	a, b := c.NewTimer(time.Second), c.NewTimer(3*time.Second)
	if c.Timers() != 2 {
		t.Fatalf("%d timers", c.Timers())
	}
	if next, ok := c.NextDeadline(); !ok || !next.Equal(start.Add(time.Second)) {
		t.Fatalf("NextDeadline %v %v", next, ok)
	}
	c.Advance(2 * time.Second)
	select {
	case got := <-a.C():
		if !got.Equal(start.Add(2 * time.Second)) {
			t.Fatalf("fired with %v", got)
		}
	default:
		t.Fatal("due timer did not fire")
	}
	select {
	case <-b.C():
		t.Fatal("timer fired early")
	default:
	}
	if !b.Stop() || b.Stop() || a.Stop() {
		t.Fatal("Stop results wrong")
	}
	if _, ok := c.NextDeadline(); ok {
		t.Fatal("stopped timer still pending")
	}
	now := c.NewTimer(0)
	select {
	case <-now.C():
	default:
		t.Fatal("zero timer did not fire at once")
	}
}

func TestWaitForTimers(t *testing.T) {
	c := New(time.Unix(0, 0))
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- c.WaitForTimers(ctx, 2)
	}()
	c.NewTimer(time.Second)
	c.NewTimer(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.WaitForTimers(ctx, 3); err == nil {
		t.Fatal("WaitForTimers returned nil on a cancelled context")
	}
}
