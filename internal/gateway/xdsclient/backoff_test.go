package xdsclient

import (
	"testing"
	"time"
)

// TestBackoffIsBoundedAndJittered checks the reconnect wait: never above
// the exponential bound nor the cap, and spread rather than fixed.
func TestBackoffIsBoundedAndJittered(t *testing.T) {
	for attempt := range 20 {
		bound := min(backoffBase<<min(attempt, 10), backoffMax)
		seen := map[time.Duration]bool{}
		for range 50 {
			d := backoff(attempt)
			if d <= 0 || d > bound+time.Millisecond {
				t.Fatalf("attempt %d: wait %v outside (0, %v]", attempt, d, bound)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("attempt %d: only %d distinct waits in 50, want jitter", attempt, len(seen))
		}
	}
}
