package rotation

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/certs/clock/fakeclock"
	"github.com/maestro-ml/maestro/certs/localca"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/internal/syncbuf"
)

const td = "cluster.local"

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// flaky wraps an issuer with an outage switch, per-identity refusals and
// an optional gate holding issued certificates until released.
type flaky struct {
	certs.Issuer
	down     atomic.Bool
	attempts atomic.Int64
	gate     atomic.Pointer[gate]
	mu       sync.Mutex
	refuse   map[spiffe.ID]bool
}

// gate holds each issued certificate: it signals entered, then waits for
// release to be closed.
type gate struct {
	entered chan struct{}
	release chan struct{}
}

func (f *flaky) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	f.attempts.Add(1)
	if f.down.Load() {
		return nil, fmt.Errorf("issuer down: %w", certs.ErrUnavailable)
	}
	f.mu.Lock()
	refused := f.refuse[req.ID]
	f.mu.Unlock()
	if refused {
		return nil, fmt.Errorf("refused %s: %w", req.ID, certs.ErrUnavailable)
	}
	c, err := f.Issuer.Issue(ctx, req)
	if g := f.gate.Load(); g != nil {
		select {
		case g.entered <- struct{}{}:
		case <-ctx.Done():
		}
		select {
		case <-g.release:
		case <-ctx.Done():
		}
	}
	return c, err
}

func (f *flaky) setRefused(id spiffe.ID, v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse == nil {
		f.refuse = map[spiffe.ID]bool{}
	}
	f.refuse[id] = v
}

// RotateRoot and RetirePreviousRoots pass through so the wrapper stays a
// certs.RootRotator.
func (f *flaky) RotateRoot(ctx context.Context) error {
	return f.Issuer.(certs.RootRotator).RotateRoot(ctx)
}

func (f *flaky) RetirePreviousRoots(ctx context.Context) error {
	return f.Issuer.(certs.RootRotator).RetirePreviousRoots(ctx)
}

type harness struct {
	t      *testing.T
	clock  *fakeclock.Clock
	ca     *localca.CA
	issuer *flaky
	m      *Manager
	reg    *prometheus.Registry
	audit  *lockedBuffer
	snaps  <-chan Snapshot
	ctx    context.Context
}

// lockedBuffer is the audit log's writer; kinds counts its events.
type lockedBuffer struct{ syncbuf.Buffer }

func (l *lockedBuffer) kinds() map[audit.Kind]int {
	out := map[audit.Kind]int{}
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		var ev audit.Event
		if json.Unmarshal([]byte(line), &ev) == nil {
			out[ev.Kind]++
		}
	}
	return out
}

func newHarness(t *testing.T, cfg Config, caCfg localca.Config) *harness {
	t.Helper()
	h := &harness{t: t, clock: fakeclock.New(start), reg: prometheus.NewRegistry(), audit: &lockedBuffer{}}
	caCfg.TrustDomain = td
	caCfg.Now = h.clock.Now
	ca, err := localca.Open(caCfg)
	if err != nil {
		t.Fatal(err)
	}
	h.ca = ca
	h.issuer = &flaky{Issuer: ca}
	cfg.Issuer = h.issuer
	cfg.IssuerName = "localca"
	cfg.Clock = h.clock
	if cfg.Rand == nil {
		cfg.Rand = func() float64 { return 0.5 }
	}
	cfg.Registerer = h.reg
	cfg.Audit = audit.New(h.audit, h.clock.Now)
	h.m, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx = ctx
	done := make(chan error, 1)
	go func() { done <- h.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	h.snaps = h.m.Subscribe(ctx)
	return h
}

// settle waits until the manager has finished its work and sleeps on the
// clock again.
func (h *harness) settle() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitForTimers(ctx, 1); err != nil {
		h.t.Fatal(err)
	}
}

// step advances the clock to the manager's next wake-up and waits until it
// has handled it, returning the new time.
func (h *harness) step() time.Time {
	h.t.Helper()
	h.settle()
	next, ok := h.clock.NextDeadline()
	if !ok {
		h.t.Fatal("manager is not waiting on the clock")
	}
	h.clock.Advance(next.Sub(h.clock.Now()))
	h.settle()
	return h.clock.Now()
}

// waitSnap returns the first published snapshot satisfying ok.
func (h *harness) waitSnap(what string, ok func(Snapshot) bool) Snapshot {
	h.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-h.snaps:
			if ok(s) {
				return s
			}
		case <-timeout:
			h.t.Fatalf("no snapshot with %s; current: %+v", what, h.m.Current())
		}
	}
}

// latest drains the subscription and returns the newest snapshot.
func (h *harness) latest() Snapshot {
	h.t.Helper()
	s := h.m.Current()
	for {
		select {
		case got := <-h.snaps:
			s = got
		default:
			return s
		}
	}
}

func (h *harness) assertNothingExpired(s Snapshot) {
	h.t.Helper()
	now := h.clock.Now()
	for id, c := range s.Certs {
		if c.ExpiredAt(now) {
			h.t.Fatalf("snapshot v%d hands out %s expired at %v (now %v)", s.Version, id, c.NotAfter(), now)
		}
	}
}

func TestRotationBeforeExpiryWithThreeSecondTTL(t *testing.T) {
	h := newHarness(t, Config{TTL: 3 * time.Second}, localca.Config{})
	id := spiffe.Must(td, "default", "frontend")
	h.m.SetIdentities([]spiffe.ID{id})

	s := h.waitSnap("first cert", func(s Snapshot) bool { return s.Certs[id] != nil })
	prev, prevIssued := s.Certs[id], start
	if !prev.NotAfter().Equal(start.Add(3 * time.Second)) {
		t.Fatalf("first cert valid until %v, want %v", prev.NotAfter(), start.Add(3*time.Second))
	}
	for round := range 5 {
		now := h.step()
		s := h.latest()
		cur := s.Certs[id]
		if cur == nil || cur.Serial() == prev.Serial() {
			t.Fatalf("round %d at %v: not rotated (have %v)", round, now, cur)
		}
		// Default 2/3 with jitter 0.05 at Rand 0.5: re-issued at 0.6417 of
		// the lifetime.
		share := DefaultRenewFraction - DefaultJitter*0.5
		lifetime := prev.NotAfter().Sub(prevIssued)
		want := prevIssued.Add(time.Duration(float64(lifetime) * share))
		if d := now.Sub(want); d < -time.Millisecond || d > time.Millisecond {
			t.Fatalf("round %d: rotated at %v, want %v (%.4f of %v)", round, now, want, share, lifetime)
		}
		if !now.Before(prev.NotAfter()) {
			t.Fatalf("round %d: rotated at %v, not before expiry %v", round, now, prev.NotAfter())
		}
		if cur.NotAfter().Sub(now) < 3*time.Second || cur.Capped {
			t.Fatalf("round %d: new cert valid until %v, less than the 3s asked from %v", round, cur.NotAfter(), now)
		}
		if s.Bundle == nil || !s.Bundle.Contains(h.ca.Root()) {
			t.Fatal("snapshot bundle lacks the root")
		}
		prev, prevIssued = cur, now
	}
	if got := value(t, h.m.metrics.issued.WithLabelValues("localca", "rotated")); got != 5 {
		t.Fatalf("rotated counter %v, want 5", got)
	}
	want := float64(prev.NotAfter().UnixNano()) / 1e9
	if got := value(t, h.m.metrics.expiry.WithLabelValues(id.String())); got != want {
		t.Fatalf("expiry gauge %v, want %v", got, want)
	}
	if k := h.audit.kinds(); k[audit.Issued] != 1 || k[audit.Rotated] != 5 {
		t.Fatalf("audit kinds %v", k)
	}
}

func TestOutageNeverHandsOutExpiredAndRecovers(t *testing.T) {
	const (
		ttl    = 3 * time.Second
		outage = 10 * time.Second
		maxBO  = 4 * time.Second
	)
	h := newHarness(t, Config{TTL: ttl, MinBackoff: 250 * time.Millisecond, MaxBackoff: maxBO}, localca.Config{})
	ids := []spiffe.ID{spiffe.Must(td, "a", "one"), spiffe.Must(td, "a", "two")}
	h.m.SetIdentities(ids)
	h.waitSnap("both certs", func(s Snapshot) bool { return len(s.Certs) == 2 })

	h.issuer.down.Store(true)
	downAt := h.clock.Now()
	var sawWithdrawn bool
	var retryTimes []time.Time
	for h.clock.Now().Before(downAt.Add(outage)) {
		before := h.issuer.attempts.Load()
		now := h.step()
		if h.issuer.attempts.Load() > before {
			retryTimes = append(retryTimes, now)
		}
		s := h.latest()
		h.assertNothingExpired(s)
		h.assertNothingExpired(h.m.Current())
		if len(s.Certs) == 0 {
			sawWithdrawn = true
		}
		for _, id := range ids {
			if c, ok := h.m.Certificate(id); ok && c.ExpiredAt(now) {
				t.Fatalf("Certificate(%s) returned an expired cert", id)
			}
		}
	}
	if !sawWithdrawn {
		t.Fatal("certs outlived a 10s outage with a 3s TTL; they must have been withdrawn at expiry")
	}
	// Retry gaps grow exponentially (equal jitter at 0.5: 3/4 of the
	// doubling backoff) and stay under MaxBackoff.
	var gaps []time.Duration
	for i := 1; i < len(retryTimes); i++ {
		gaps = append(gaps, retryTimes[i].Sub(retryTimes[i-1]))
	}
	if len(gaps) < 3 {
		t.Fatalf("only %d retries during the outage: %v", len(retryTimes), retryTimes)
	}
	grew := false
	for i := 1; i < len(gaps); i++ {
		if gaps[i] < gaps[i-1] {
			t.Fatalf("retry gaps shrank: %v", gaps)
		}
		if gaps[i] > gaps[i-1] {
			grew = true
		}
		if gaps[i] > maxBO {
			t.Fatalf("retry gap %v exceeds MaxBackoff %v: %v", gaps[i], maxBO, gaps)
		}
	}
	if !grew {
		t.Fatalf("retry gaps did not grow: %v", gaps)
	}
	if got := value(t, h.m.metrics.failures.WithLabelValues("localca")); got < 6 {
		t.Fatalf("failure counter %v, want one per failed attempt", got)
	}
	// An expired identity has no expiry gauge: a stale value would hide it.
	if n := count(h.m.metrics.expiry); n != 0 {
		t.Fatalf("%d expiry gauges for expired certs", n)
	}

	h.issuer.down.Store(false)
	upAt := h.clock.Now()
	for len(h.latest().Certs) < 2 {
		if h.step().Sub(upAt) > maxBO {
			t.Fatalf("not recovered %v after the issuer came back", h.clock.Now().Sub(upAt))
		}
	}
	s := h.latest()
	h.assertNothingExpired(s)
	for _, id := range ids {
		if c := s.Certs[id]; c == nil || c.NotAfter().Sub(h.clock.Now()) < ttl {
			t.Fatalf("recovered cert for %s: %v", id, c)
		}
	}
	if k := h.audit.kinds(); k[audit.Expired] != 2 || k[audit.Failed] == 0 {
		t.Fatalf("audit kinds %v, want 2 expired and failures", k)
	}
}

func TestOutageShorterThanLifetimeKeepsServing(t *testing.T) {
	h := newHarness(t, Config{TTL: time.Hour, MinBackoff: time.Second, MaxBackoff: time.Minute}, localca.Config{})
	id := spiffe.Must(td, "a", "b")
	h.m.SetIdentities([]spiffe.ID{id})
	first := h.waitSnap("cert", func(s Snapshot) bool { return s.Certs[id] != nil }).Certs[id]

	h.issuer.down.Store(true)
	now := h.step() // the renewal attempt, which fails
	if got, _ := h.m.Certificate(id); got != first {
		t.Fatalf("after a failed renewal at %v the manager no longer serves the unexpired cert", now)
	}
	h.issuer.down.Store(false)
	for {
		now = h.step()
		if c, _ := h.m.Certificate(id); c != nil && c != first {
			break
		}
		if !now.Before(first.NotAfter()) {
			t.Fatal("not renewed before expiry after a short outage")
		}
	}
}

func TestSetIdentitiesRemovesAndAdds(t *testing.T) {
	h := newHarness(t, Config{TTL: time.Hour}, localca.Config{})
	a, b := spiffe.Must(td, "n", "a"), spiffe.Must(td, "n", "b")
	h.m.SetIdentities([]spiffe.ID{a, b})
	h.waitSnap("a and b", func(s Snapshot) bool { return len(s.Certs) == 2 })
	h.m.SetIdentities([]spiffe.ID{b})
	s := h.waitSnap("only b", func(s Snapshot) bool { return len(s.Certs) == 1 })
	if s.Certs[b] == nil || s.Certs[a] != nil {
		t.Fatalf("snapshot ids %v", s.IDs())
	}
	if n := count(h.m.metrics.expiry); n != 1 {
		t.Fatalf("%d expiry gauges, want 1", n)
	}
}

func TestAlwaysIdentitiesSurviveSetIdentities(t *testing.T) {
	self := spiffe.Must(td, "maestro-system", "controlplane")
	h := newHarness(t, Config{TTL: time.Hour, Always: []spiffe.ID{self}}, localca.Config{})
	h.waitSnap("own cert before any SetIdentities", func(s Snapshot) bool { return s.Certs[self] != nil })
	a := spiffe.Must(td, "n", "a")
	h.m.SetIdentities([]spiffe.ID{a})
	h.waitSnap("a and self", func(s Snapshot) bool { return s.Certs[a] != nil && s.Certs[self] != nil })
	h.m.SetIdentities(nil)
	s := h.waitSnap("only self", func(s Snapshot) bool { return len(s.Certs) == 1 })
	if s.Certs[self] == nil {
		t.Fatal("always-issued identity dropped")
	}
	if _, err := New(Config{Issuer: h.ca, Always: []spiffe.ID{{TrustDomain: td}}}); err == nil {
		t.Fatal("invalid always-issued identity accepted")
	}
}

func TestRootRotationKeepsBothRootsUntilEveryLeafReissued(t *testing.T) {
	h := newHarness(t, Config{TTL: time.Hour, MinBackoff: time.Second, MaxBackoff: 2 * time.Second}, localca.Config{Intermediate: true})
	a, b := spiffe.Must(td, "n", "a"), spiffe.Must(td, "n", "b")
	h.m.SetIdentities([]spiffe.ID{a, b})
	before := h.waitSnap("both", func(s Snapshot) bool { return len(s.Certs) == 2 })
	oldRoot := h.ca.Root()

	h.issuer.setRefused(b, true)
	if err := h.m.RotateRoot(h.ctx); err != nil {
		t.Fatal(err)
	}
	s := h.waitSnap("a re-issued", func(s Snapshot) bool { return s.Certs[a].Serial() != before.Certs[a].Serial() })
	if len(s.Bundle.Roots) != 2 || !s.Bundle.Contains(oldRoot) || !s.Bundle.Contains(h.ca.Root()) {
		t.Fatalf("during rotation the bundle has %d roots, want old and new", len(s.Bundle.Roots))
	}
	if s.Certs[b].Serial() != before.Certs[b].Serial() {
		t.Fatal("b changed although its issuance fails")
	}
	// b still chains to the old root: retiring it now would cut b off.
	h.step()
	if got := h.latest().Bundle; len(got.Roots) != 2 {
		t.Fatalf("old root retired while b still depends on it (%d roots)", len(got.Roots))
	}

	h.issuer.setRefused(b, false)
	h.step()
	s = h.latest()
	if len(s.Bundle.Roots) != 1 || !s.Bundle.Contains(h.ca.Root()) {
		t.Fatalf("after every leaf was re-issued the bundle has %d roots, want only the new", len(s.Bundle.Roots))
	}
	for id, c := range s.Certs {
		if err := c.Leaf.CheckSignatureFrom(c.Chain[1]); err != nil || c.Chain[1].CheckSignatureFrom(h.ca.Root()) != nil {
			t.Fatalf("%s does not chain to the new root", id)
		}
	}
	if k := h.audit.kinds(); k[audit.RootRotated] != 2 {
		t.Fatalf("audit kinds %v, want rotation start and retirement", k)
	}
}

// skewed issues certificates that expired before the manager's now.
type skewed struct{ certs.Issuer }

func (s skewed) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	req.TTL = time.Second
	return s.Issuer.Issue(ctx, req)
}

func TestAlreadyExpiredCertificateIsAFailureNotASpin(t *testing.T) {
	clk := fakeclock.New(start)
	// The CA's clock is an hour behind the manager's.
	ca, err := localca.Open(localca.Config{TrustDomain: td, Now: func() time.Time { return clk.Now().Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	// Always, rather than SetIdentities, so no wake-up races the checks.
	m, err := New(Config{Issuer: skewed{ca}, Clock: clk, MinBackoff: time.Second, MaxBackoff: 4 * time.Second,
		Rand: func() float64 { return 0 }, Always: []spiffe.ID{spiffe.Must(td, "n", "a")}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	for range 3 {
		if err := clk.WaitForTimers(wctx, 1); err != nil {
			t.Fatal(err)
		}
		next, _ := clk.NextDeadline()
		if wait := next.Sub(clk.Now()); wait < 500*time.Millisecond {
			t.Fatalf("manager retries after %v: an expired certificate must back off", wait)
		}
		if len(m.Current().Certs) != 0 {
			t.Fatal("an expired certificate was published")
		}
		clk.Advance(next.Sub(clk.Now()))
	}
	if got := value(t, m.metrics.failures.WithLabelValues("issuer")); got < 2 {
		t.Fatalf("failures %v", got)
	}
}

func TestRootRotationReissuesCertificatesInFlight(t *testing.T) {
	h := newHarness(t, Config{TTL: time.Hour}, localca.Config{Intermediate: true})
	a, b := spiffe.Must(td, "n", "a"), spiffe.Must(td, "n", "b")
	h.m.SetIdentities([]spiffe.ID{a})
	h.waitSnap("a", func(s Snapshot) bool { return s.Certs[a] != nil })

	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	h.issuer.gate.Store(g)
	h.m.SetIdentities([]spiffe.ID{a, b})
	<-g.entered // b's certificate is signed by the old root and in flight
	if err := h.m.RotateRoot(h.ctx); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			select {
			case <-g.entered:
			case <-h.ctx.Done():
				return
			}
		}
	}()
	close(g.release)
	s := h.waitSnap("rotation finished", func(s Snapshot) bool { return len(s.Bundle.Roots) == 1 && len(s.Certs) == 2 })
	for id, c := range s.Certs {
		if c.Chain[1].CheckSignatureFrom(h.ca.Root()) != nil {
			t.Fatalf("%s still chains to the old root after it was retired", id)
		}
	}
}

func TestCappedTTLIsReported(t *testing.T) {
	h := newHarness(t, Config{TTL: 24 * time.Hour}, localca.Config{MaxTTL: time.Hour})
	id := spiffe.Must(td, "n", "a")
	h.m.SetIdentities([]spiffe.ID{id})
	c := h.waitSnap("cert", func(s Snapshot) bool { return s.Certs[id] != nil }).Certs[id]
	if !c.Capped {
		t.Fatal("capped lifetime not flagged")
	}
	if got := value(t, h.m.metrics.capped.WithLabelValues("localca")); got != 1 {
		t.Fatalf("capped counter %v", got)
	}
	// Renewal follows the granted lifetime, not the requested one.
	h.settle()
	if next, _ := h.clock.NextDeadline(); next.After(c.NotAfter()) {
		t.Fatalf("next wake %v is after expiry %v", next, c.NotAfter())
	}
}

func TestConfigErrors(t *testing.T) {
	ca, err := localca.Open(localca.Config{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]Config{
		"no issuer":        {},
		"fraction too big": {Issuer: ca, RenewFraction: 1.5},
		"jitter too big":   {Issuer: ca, RenewFraction: 0.5, Jitter: 0.6},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := New(cfg); err == nil {
				t.Fatal("want error")
			}
		})
	}
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Issuer: ca, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Issuer: ca, Registerer: reg}); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("second manager on one registry: %v", err)
	}
	m, _ := New(Config{Issuer: ca})
	if err := m.RotateRoot(context.Background()); err != nil {
		t.Fatalf("localca rotates: %v", err)
	}
	m2, _ := New(Config{Issuer: struct{ certs.Issuer }{ca}})
	if err := m2.RotateRoot(context.Background()); err == nil {
		t.Fatal("RotateRoot on an issuer without RootRotator succeeded")
	}
}

// BenchmarkFullIssue1000 measures the time from declaring 1,000 identities
// to the snapshot holding all of their certificates (built-in CA, real
// clock), which is what a control plane start or a root rotation costs
// before the SDS push.
func BenchmarkFullIssue1000(b *testing.B) {
	ids := make([]spiffe.ID, 1000)
	for i := range ids {
		ids[i] = spiffe.Must(td, fmt.Sprintf("ns%d", i%10), fmt.Sprintf("sa%d", i))
	}
	var total, cpu time.Duration
	for b.Loop() {
		ca, err := localca.Open(localca.Config{TrustDomain: td, Intermediate: true})
		if err != nil {
			b.Fatal(err)
		}
		m, err := New(Config{Issuer: ca, TTL: time.Hour, Concurrency: 4})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		snaps := m.Subscribe(ctx)
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		begin, cpuBegin := time.Now(), cpuTime(b)
		m.SetIdentities(ids)
		for s := range snaps {
			if len(s.Certs) == len(ids) {
				break
			}
		}
		total += time.Since(begin)
		cpu += cpuTime(b) - cpuBegin
		cancel()
		if err := <-done; err != nil {
			b.Fatalf("Run: %v", err)
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/full-issue")
	b.ReportMetric(float64(len(ids)*b.N)/total.Seconds(), "certs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(ids)*b.N), "cpu-µs/cert")
}

// cpuTime is the process's user+system CPU time so far: on a shared machine
// it is steadier than wall time.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
