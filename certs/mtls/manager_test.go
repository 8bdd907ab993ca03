package mtls

import (
	"context"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/certs/clock/fakeclock"
	"github.com/maestro-ml/maestro/certs/localca"
	"github.com/maestro-ml/maestro/certs/rotation"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

var _ Source = (*rotation.Manager)(nil)

// TestServerFollowsManagerRotation serves with certificates from a rotation
// manager on a 3s TTL: after each renewal, new handshakes see the new
// certificate, well before the old one expires. The fake clock starts at
// the real time, so the handshakes (which check validity against the real
// clock) accept certificates issued at fake instants a few seconds ahead.
func TestServerFollowsManagerRotation(t *testing.T) {
	clk := fakeclock.New(time.Now())
	ca, err := localca.Open(localca.Config{TrustDomain: td, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	m, err := rotation.New(rotation.Config{Issuer: ca, TTL: 3 * time.Second, Clock: clk, Always: []spiffe.ID{serverID, nodeID}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	snaps := m.Subscribe(ctx)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitVersion := func(after uint64) rotation.Snapshot {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case s := <-snaps:
				if s.Version > after && len(s.Certs) == 2 {
					return s
				}
			case <-timeout:
				t.Fatalf("no snapshot after version %d", after)
			}
		}
	}
	s := waitVersion(0)
	addr, _ := serve(t, ServerConfig(m, serverID, spiffe.AllowIDs(nodeID)))
	client := ClientConfig(m, nodeID, spiffe.AllowIDs(serverID))

	for round := range 3 {
		want := s.Certs[serverID]
		got, serial, err := dial(addr, client)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if got != nodeID.String() || serial != want.Leaf.SerialNumber.Text(16) {
			t.Fatalf("round %d: server saw %s with serial %s, want %s", round, got, serial, want.Serial())
		}
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		if err := clk.WaitForTimers(wctx, 1); err != nil {
			t.Fatal(err)
		}
		wcancel()
		next, _ := clk.NextDeadline()
		if !next.Before(want.NotAfter()) {
			t.Fatalf("round %d: next renewal %v is not before expiry %v", round, next, want.NotAfter())
		}
		clk.Advance(next.Sub(clk.Now()))
		s = waitVersion(s.Version)
	}
}
