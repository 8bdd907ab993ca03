package vault_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/maestro-ml/maestro/certs/rotation"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/certs/vault"
	"github.com/maestro-ml/maestro/certs/vault/vaulttest"
)

// vaultFaults are the ways Vault fails that its documentation describes,
// each with how to switch it on and off on the test server.
var vaultFaults = []struct {
	name string
	tls  bool
	set  func(s *vaulttest.Server, on bool)
}{
	{name: "down", set: func(s *vaulttest.Server, on bool) { s.SetDown(on) }},
	{name: "down over TLS", tls: true, set: func(s *vaulttest.Server, on bool) { s.SetDown(on) }},
	{name: "sealed", set: func(s *vaulttest.Server, on bool) { s.SetSealed(on) }},
	{name: "standby during an election", set: func(s *vaulttest.Server, on bool) { s.SetStandby(on, false) }},
	{name: "performance standby during an election", set: func(s *vaulttest.Server, on bool) { s.SetStandby(on, true) }},
	{name: "rate limited 429", set: func(s *vaulttest.Server, on bool) { s.SetFailure(map[bool]int{true: 429}[on]) }},
	{name: "internal error 500", set: func(s *vaulttest.Server, on bool) { s.SetFailure(map[bool]int{true: 500}[on]) }},
}

// TestReliabilityVaultFaultsThroughRotation runs the rotation manager
// against the Vault issuer with a 3s TTL while Vault fails for 10s of
// clock time in each documented way: no expired certificate may be handed
// out at any instant, expired ones are withdrawn, and issuance recovers by
// itself within the largest backoff once Vault is back.
func TestReliabilityVaultFaultsThroughRotation(t *testing.T) {
	for _, f := range vaultFaults {
		t.Run(f.name, func(t *testing.T) {
			outageThroughRotation(t, f.tls, f.set)
		})
	}
}

// outageThroughRotation is one fault of
// TestReliabilityVaultFaultsThroughRotation, switched with set.
func outageThroughRotation(t *testing.T, tls bool, set func(*vaulttest.Server, bool)) {
	const (
		ttl     = 3 * time.Second
		outage  = 10 * time.Second
		maxBack = 2 * time.Second
	)
	e := newEnvTLS(t, nil, 0, 0, tls)
	iss := e.issuer(t, vault.TokenAuth{Token: vault.Secret{Value: e.root}}, vault.ModeSign)
	reg := prometheus.NewRegistry()
	m, err := rotation.New(rotation.Config{
		Issuer: iss, IssuerName: "vault", TTL: ttl,
		MinBackoff: 250 * time.Millisecond, MaxBackoff: maxBack,
		Clock: e.clock, Rand: func() float64 { return 0.5 },
		Registerer: reg, Logger: slogJSON(e.logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("manager did not stop")
		}
	})
	ids := []spiffe.ID{id, spiffe.Must(td, "default", "backend")}
	snaps := m.Subscribe(ctx)
	m.SetIdentities(ids)
	wait := time.After(10 * time.Second)
	for len(m.Current().Certs) < 2 {
		select {
		case <-snaps:
		case <-wait:
			t.Fatal("no certificates issued from Vault")
		}
	}

	settle := func() {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := e.clock.WaitForTimers(wctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	step := func() time.Time {
		t.Helper()
		settle()
		next, _ := e.clock.NextDeadline()
		e.clock.Advance(next.Sub(e.clock.Now()))
		settle()
		return e.clock.Now()
	}
	check := func() {
		t.Helper()
		now := e.clock.Now()
		for {
			select {
			case s := <-snaps:
				for sid, c := range s.Certs {
					if c.ExpiredAt(now) {
						t.Fatalf("snapshot v%d hands out %s, expired at %v (now %v)", s.Version, sid, c.NotAfter(), now)
					}
				}
				continue
			default:
			}
			break
		}
		for sid, c := range m.Current().Certs {
			if c.ExpiredAt(now) {
				t.Fatalf("Current hands out %s, expired at %v (now %v)", sid, c.NotAfter(), now)
			}
		}
	}

	set(e.srv, true)
	downAt := e.clock.Now()
	withdrawn := false
	for e.clock.Now().Sub(downAt) < outage {
		step()
		check()
		if len(m.Current().Certs) == 0 {
			withdrawn = true
		}
	}
	if !withdrawn {
		t.Fatal("3s certificates survived a 10s outage; they must be withdrawn when they expire")
	}
	failures := counter(t, reg, "maestro_certs_issue_failures_total")
	if failures < 4 {
		t.Fatalf("failure counter %v after a 10s outage", failures)
	}

	set(e.srv, false)
	upAt := e.clock.Now()
	for len(m.Current().Certs) < 2 {
		if step().Sub(upAt) > maxBack {
			t.Fatalf("issuance not recovered %v after Vault came back", e.clock.Now().Sub(upAt))
		}
		check()
	}
	t.Logf("recovered %v (clock) after Vault came back, with %v largest backoff", e.clock.Now().Sub(upAt), maxBack)
	// And rotation carries on as normal afterwards.
	before := m.Current().Certs[id].Serial()
	for m.Current().Certs[id].Serial() == before {
		step()
		check()
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += metricValue(m)
		}
	}
	return total
}

func metricValue(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
