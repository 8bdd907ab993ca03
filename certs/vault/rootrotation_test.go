package vault_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/rotation"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/certs/vault"
)

// TestVaultRootChangeKeepsBothRootsUntilEveryLeafMoved changes Vault's
// root under a running manager: every snapshot it publishes must verify
// each of its certificates against its own bundle (so the old root stays
// while any leaf needs it), and in the end only the new root remains.
func TestVaultRootChangeKeepsBothRootsUntilEveryLeafMoved(t *testing.T) {
	e := newEnv(t, nil, 0, 0)
	iss := e.issuer(t, vault.TokenAuth{Token: vault.Secret{Value: e.root}}, vault.ModeSign)
	// Alternate jitter so the two identities renew at different times and
	// the rotation passes through a mixed state.
	var n atomic.Int64
	// OnChange sees every snapshot, including short-lived ones a
	// subscriber may skip.
	var mu sync.Mutex
	var seen []rotation.Snapshot
	m, err := rotation.New(rotation.Config{
		Issuer: iss, IssuerName: "vault", TTL: time.Hour, Clock: e.clock,
		Rand: func() float64 { return float64(n.Add(1) % 2) },
		OnChange: func(s rotation.Snapshot) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, s)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	snaps := m.Subscribe(ctx)
	ids := []spiffe.ID{id, spiffe.Must(td, "default", "backend")}
	m.SetIdentities(ids)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	step := func() {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := e.clock.WaitForTimers(wctx, 1); err != nil {
			t.Fatal(err)
		}
		next, _ := e.clock.NextDeadline()
		e.clock.Advance(next.Sub(e.clock.Now()))
		if err := e.clock.WaitForTimers(wctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	timeout := time.After(10 * time.Second)
	for len(m.Current().Certs) < 2 {
		select {
		case <-snaps:
		case <-timeout:
			t.Fatal("no certificates")
		}
	}
	oldRoots := m.Bundle()
	if err := e.srv.RotateRoot(); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		step()
		if b := m.Bundle(); len(b.Roots) == 1 && !b.Equal(oldRoots) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	mixed := false
	for _, s := range seen {
		if len(s.Bundle.Roots) == 2 {
			mixed = true
		}
	}
	if !mixed {
		t.Fatal("no snapshot held both roots during the change")
	}
	final := m.Current()
	if len(final.Bundle.Roots) != 1 || final.Bundle.Equal(oldRoots) || string(final.Bundle.PEM()) != string(e.srv.RootPEM()) {
		t.Fatal("the old root was not retired in the end")
	}
	for _, s := range append(seen, final) {
		for sid, c := range s.Certs {
			verifyAt(t, s.Version, sid, c, s.Bundle)
		}
	}
}

// verifyAt checks that c verifies against b at a time inside its validity.
func verifyAt(t *testing.T, version uint64, sid spiffe.ID, c *certs.Certificate, b *certs.Bundle) {
	t.Helper()
	raw := make([][]byte, len(c.Chain))
	for i, x := range c.Chain {
		raw[i] = x.Raw
	}
	mid := c.NotBefore().Add(c.Lifetime() / 2)
	v := spiffe.Verifier{Roots: b.Pool, Allow: spiffe.AllowIDs(sid), Now: func() time.Time { return mid }}
	if _, err := v.Verify(raw); err != nil {
		t.Fatalf("snapshot v%d: %s does not verify against its own bundle (%d roots): %v", version, sid, len(b.Roots), err)
	}
}
