// Package fakes holds the stand-ins the closed loop's tests share: a clock
// moved by hand and an audit log kept in memory. Tests only import it
// (internal/archtest checks).
package fakes

import (
	"context"
	"sync"
	"time"

	"github.com/maestro-ml/maestro/certs/audit"
)

// Clock is a time source moved only by Add, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now reads the clock; pass it where a Config wants a func() time.Time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock forward by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Audit is an audit sink that keeps every event, safe for concurrent use.
type Audit struct {
	mu     sync.Mutex
	events []audit.Event
}

// Record keeps ev.
func (a *Audit) Record(_ context.Context, ev audit.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, ev)
	return nil
}

// Events returns a copy of the events recorded so far, in order.
func (a *Audit) Events() []audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Event(nil), a.events...)
}

// Kinds returns the recorded events' kinds, in order.
func (a *Audit) Kinds() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.events))
	for _, e := range a.events {
		out = append(out, string(e.Kind))
	}
	return out
}

// Last returns the latest event; the zero Event when there is none.
func (a *Audit) Last() audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.events) == 0 {
		return audit.Event{}
	}
	return a.events[len(a.events)-1]
}
