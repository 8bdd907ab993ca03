// Package audit writes the security audit trail of Maestro as JSON lines:
// every certificate issuance, rotation, refusal and failure, and the control
// plane's policy changes and refused secret requests. One event per line so
// that log shippers and jq can read it without a schema.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Kind names what happened.
type Kind string

// The kinds of event Maestro records.
const (
	// Issued is a first certificate for an identity.
	Issued Kind = "issued"
	// Rotated is a replacement certificate for an identity.
	Rotated Kind = "rotated"
	// Expired is a certificate withdrawn because it expired before a
	// replacement could be issued.
	Expired Kind = "expired"
	// Failed is an issuance attempt that failed.
	Failed Kind = "failed"
	// Refused is a request denied for lack of entitlement (a node asking
	// for another identity's secret, an unknown peer).
	Refused Kind = "refused"
	// RootRotated is a change of the trust root.
	RootRotated Kind = "root_rotated"
	// PolicyChanged is a new mesh policy taking effect.
	PolicyChanged Kind = "policy_changed"
)

// Event is one audit record. Empty fields are left out of the JSON. Never
// put key material or credentials in any field.
type Event struct {
	Time     time.Time `json:"time"`
	Kind     Kind      `json:"event"`
	Identity string    `json:"identity,omitempty"`
	// Peer is who asked (a node ID or a peer SPIFFE ID) when not Identity.
	Peer     string    `json:"peer,omitempty"`
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	Issuer   string    `json:"issuer,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Error    string    `json:"error,omitempty"`
	// Details holds anything else worth keeping (resource names, versions).
	Details map[string]string `json:"details,omitempty"`
}

// Log appends events to a writer. It is safe for concurrent use; a nil *Log
// discards events, so components can take an optional one.
type Log struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

// New returns a Log writing to w, stamping events with now (nil means
// time.Now) when their Time is zero.
func New(w io.Writer, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{w: w, now: now}
}

// Record writes ev as one JSON line.
//
// # Errors
// A failed write is returned so callers can count it; the event is lost.
func (l *Log) Record(_ context.Context, ev Event) error {
	if l == nil {
		return nil
	}
	if ev.Time.IsZero() {
		ev.Time = l.now()
	}
	ev.Time = ev.Time.UTC()
	if !ev.NotAfter.IsZero() {
		ev.NotAfter = ev.NotAfter.UTC()
	}
	line, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("audit %s: encode: %w", ev.Kind, err)
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(line); err != nil {
		return fmt.Errorf("audit %s: write: %w", ev.Kind, err)
	}
	return nil
}
