// Package rotation keeps one current certificate per workload identity:
// it issues them, re-issues each at a share of its lifetime, rides out issuer
// outages without ever handing out an expired certificate, and publishes a
// consistent snapshot (every current certificate plus the trust bundle, with
// a version) that the control plane turns into SDS secrets.
package rotation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/certs/clock"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

// Defaults for Config's zero values.
const (
	DefaultRenewFraction = 2.0 / 3.0
	DefaultJitter        = 0.05
	DefaultMinBackoff    = time.Second
	DefaultMaxBackoff    = 2 * time.Minute
	DefaultConcurrency   = 8
	DefaultIssueTimeout  = 30 * time.Second
	// idleWake bounds how long the loop sleeps with nothing scheduled, so
	// that a lost wake-up can never stall rotation for good.
	idleWake = time.Hour
)

// Config configures a Manager. Issuer is required.
type Config struct {
	Issuer certs.Issuer
	// IssuerName labels metrics and audit events ("localca", "vault").
	IssuerName string
	// TTL is the lifetime asked for; certs.DefaultTTL when zero.
	TTL time.Duration
	// RenewFraction is the share of a certificate's lifetime after which it
	// is re-issued (default 2/3). Jitter is the largest share of the
	// lifetime subtracted at random from that point (default 0.05), so
	// that identities issued together do not all renew together.
	RenewFraction, Jitter float64
	// MinBackoff and MaxBackoff bound the exponential retry delay after a
	// failed issuance.
	MinBackoff, MaxBackoff time.Duration
	// Concurrency bounds parallel issuance requests (default 8).
	Concurrency int
	// IssueTimeout bounds one issuance attempt (default 30s), so a hanging
	// issuer delays a round but never stops the loop.
	IssueTimeout time.Duration
	// OnChange, when set, receives every snapshot as it is published, in
	// order, none skipped. It runs with the manager's lock held: it must
	// return quickly and must not call the Manager.
	OnChange func(Snapshot)
	// Always are identities kept whatever SetIdentities says: the control
	// plane's own, which serves xDS with it.
	Always []spiffe.ID
	// Names are extra DNS and IP SANs issued with an identity's
	// certificate (the control plane's, for clients that check the xDS
	// address).
	Names map[spiffe.ID]certs.Names
	// Clock defaults to the system clock; Rand (values in [0,1)) to
	// math/rand/v2.
	Clock clock.Clock
	Rand  func() float64
	// Registerer receives the maestro_certs_* metrics when not nil.
	Registerer prometheus.Registerer
	Audit      *audit.Log
	Logger     *slog.Logger
}

// Snapshot is a consistent view of every current certificate and the trust
// bundle. Version increases with every change. Snapshots are immutable.
type Snapshot struct {
	Version uint64
	// Certs holds only certificates unexpired when the snapshot was made;
	// the Manager publishes a new snapshot when one expires.
	Certs map[spiffe.ID]*certs.Certificate
	// Bundle is nil until the issuer's bundle could first be read.
	Bundle *certs.Bundle
}

// IDs returns the identities in s, sorted, for deterministic output.
func (s Snapshot) IDs() []spiffe.ID {
	ids := make([]spiffe.ID, 0, len(s.Certs))
	for id := range s.Certs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	return ids
}

// entry is the state of one identity.
type entry struct {
	cert        *certs.Certificate
	renewAt     time.Time
	failures    int
	nextAttempt time.Time
}

// Manager keeps the certificates. Create it with New, start Run, declare
// identities with SetIdentities and read with Current or Subscribe.
type Manager struct {
	cfg     Config
	clock   clock.Clock
	log     *slog.Logger
	metrics *metrics
	kick    chan struct{}

	mu      sync.Mutex
	entries map[spiffe.ID]*entry
	bundle  *certs.Bundle
	version uint64
	snap    Snapshot
	subs    map[chan Snapshot]struct{}
	// failed is closed, and replaced, at every failed issuance attempt.
	failed   chan struct{}
	rotating bool // a root rotation waits for every leaf to be re-issued
	// bundleGen counts bundle changes made outside the loop, so the loop
	// never overwrites a newer bundle with one it fetched before.
	bundleGen uint64
}

// New returns a Manager; it does nothing until Run.
func New(cfg Config) (*Manager, error) {
	if cfg.Issuer == nil {
		return nil, errors.New("rotation: no issuer")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = certs.DefaultTTL
	}
	if cfg.RenewFraction == 0 {
		cfg.RenewFraction = DefaultRenewFraction
	}
	if cfg.RenewFraction <= 0 || cfg.RenewFraction >= 1 {
		return nil, fmt.Errorf("rotation: renew fraction %v: want a value in (0, 1)", cfg.RenewFraction)
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = DefaultJitter
	}
	if cfg.Jitter < 0 || cfg.Jitter >= cfg.RenewFraction {
		return nil, fmt.Errorf("rotation: jitter %v: want a value in [0, renew fraction)", cfg.Jitter)
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.IssueTimeout <= 0 {
		cfg.IssueTimeout = DefaultIssueTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.IssuerName == "" {
		cfg.IssuerName = "issuer"
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:     cfg,
		clock:   cfg.Clock,
		log:     cfg.Logger.With("component", "certs", "issuer", cfg.IssuerName),
		metrics: met,
		kick:    make(chan struct{}, 1),
		entries: map[spiffe.ID]*entry{},
		subs:    map[chan Snapshot]struct{}{},
		failed:  make(chan struct{}),
	}
	for _, id := range cfg.Always {
		if err := id.Validate(); err != nil {
			return nil, fmt.Errorf("rotation: always-issued identity: %w", err)
		}
		m.entries[id] = &entry{}
	}
	return m, nil
}

// SetIdentities declares the identities that need certificates, besides
// Config.Always. New ones are issued at once; ones no longer listed are
// dropped from the next snapshot.
func (m *Manager) SetIdentities(ids []spiffe.ID) {
	want := make(map[spiffe.ID]bool, len(ids)+len(m.cfg.Always))
	for _, id := range ids {
		want[id] = true
	}
	for _, id := range m.cfg.Always {
		want[id] = true
	}
	m.mu.Lock()
	changed := false
	for id := range m.entries {
		if !want[id] {
			delete(m.entries, id)
			m.metrics.forget(id)
			changed = true
		}
	}
	for id := range want {
		if _, ok := m.entries[id]; !ok {
			m.entries[id] = &entry{}
		}
	}
	if changed {
		m.publishLocked(m.clock.Now())
	}
	m.mu.Unlock()
	m.wake()
}

// RotateRoot replaces the issuer's root (the issuer must implement
// certs.RootRotator): the bundle holds both roots while every certificate
// is re-issued under the new one, and the old root is retired only after
// the last of them.
func (m *Manager) RotateRoot(ctx context.Context) error {
	rr, ok := m.cfg.Issuer.(certs.RootRotator)
	if !ok {
		return fmt.Errorf("rotate root: issuer %s cannot rotate its root", m.cfg.IssuerName)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := rr.RotateRoot(ctx); err != nil {
		return fmt.Errorf("rotate root: %w", err)
	}
	now := m.clock.Now()
	m.rotating = true
	m.bundleGen++
	for _, e := range m.entries {
		e.renewAt = time.Time{}
		e.nextAttempt = time.Time{}
	}
	if b, err := m.cfg.Issuer.Bundle(ctx); err == nil {
		m.bundle = b
		m.publishLocked(now)
	}
	m.record(ctx, audit.Event{Kind: audit.RootRotated, Issuer: m.cfg.IssuerName, Reason: "rotation started"})
	m.wake()
	return nil
}

// Current returns the latest snapshot, without any certificate that has
// expired since it was made.
func (m *Manager) Current() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.freshLocked(m.clock.Now())
}

// Certificate returns the current unexpired certificate for id.
func (m *Manager) Certificate(id spiffe.ID) (*certs.Certificate, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[id]
	if !ok || e.cert == nil || e.cert.ExpiredAt(m.clock.Now()) {
		return nil, false
	}
	return e.cert, true
}

// Bundle returns the current trust bundle, nil before the first issuance.
func (m *Manager) Bundle() *certs.Bundle {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bundle
}

// Subscribe returns a channel carrying the latest snapshot after every
// change, starting with the current one if any. Only the latest value is
// kept: a slow reader skips versions but never reads a stale one after a
// newer one. The channel is closed when ctx ends.
func (m *Manager) Subscribe(ctx context.Context) <-chan Snapshot {
	ch := make(chan Snapshot, 1)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	if m.version > 0 {
		ch <- m.freshLocked(m.clock.Now())
	}
	m.mu.Unlock()
	go func() {
		<-ctx.Done()
		m.mu.Lock()
		delete(m.subs, ch)
		close(ch)
		m.mu.Unlock()
	}()
	return ch
}

// NextFailure returns a channel closed at the next failed issuance attempt
// (which the manager retries with backoff): a caller waiting for a
// certificate learns that the issuer is failing without waiting out its
// own timeout.
func (m *Manager) NextFailure() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failed
}

// Run issues and renews certificates until ctx ends. It returns nil on
// cancellation; issuer failures are retried, never returned.
func (m *Manager) Run(ctx context.Context) error {
	for {
		next := m.reconcile(ctx)
		wait := next.Sub(m.clock.Now())
		if next.IsZero() || wait > idleWake {
			wait = idleWake
		}
		t := m.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		case <-m.kick:
			t.Stop()
		}
	}
}

func (m *Manager) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// result is one issuance attempt's outcome.
type result struct {
	id   spiffe.ID
	cert *certs.Certificate
	err  error
}

// reconcile drops expired certificates, issues every due one and returns
// when it next has work.
func (m *Manager) reconcile(ctx context.Context) time.Time {
	now := m.clock.Now()
	m.mu.Lock()
	changed := m.dropExpiredLocked(ctx, now)
	var due []spiffe.ID
	for id, e := range m.entries {
		if (e.cert == nil || !now.Before(e.renewAt)) && !now.Before(e.nextAttempt) {
			due = append(due, id)
		}
	}
	gen, haveBundle := m.bundleGen, m.bundle != nil
	m.mu.Unlock()

	results := m.issueAll(ctx, due)
	if ctx.Err() != nil {
		return time.Time{} // shutting down: these failures are ours, not the issuer's
	}

	// The bundle is read after issuing, outside the lock (Vault answers over
	// the network), so it covers every root the new leaves chain to.
	var bundle *certs.Bundle
	if anyIssued(results) || !haveBundle {
		b, err := m.cfg.Issuer.Bundle(ctx)
		if err != nil {
			m.log.WarnContext(ctx, "read trust bundle", "error", err)
		}
		bundle = b
	}

	now = m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range results {
		e, ok := m.entries[r.id]
		if !ok {
			continue // removed while being issued
		}
		if r.err == nil && r.cert.ExpiredAt(now) {
			// A CA whose clock is far behind ours: re-issuing at once would
			// spin, so back off like any other failure.
			r.err = fmt.Errorf("issuer returned a certificate already expired at %s (now %s): clock skew?",
				r.cert.NotAfter().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
			r.cert = nil
		}
		if r.err != nil {
			m.failedLocked(ctx, now, r, e)
			continue
		}
		m.issuedLocked(ctx, now, r, e)
		changed = true
	}
	if bundle != nil && gen == m.bundleGen && !bundle.Equal(m.bundle) {
		if m.bundle != nil && gainedRoot(m.bundle, bundle) {
			m.rootChangedLocked(ctx)
		}
		m.bundle, changed = bundle, true
	}
	if m.retireLocked(ctx, now) {
		changed = true
	}
	if changed {
		m.publishLocked(now)
	}
	return m.nextWakeLocked()
}

// gainedRoot reports whether next has a root prev lacks: the issuer's root
// changed (Vault rotated its issuer, or the built-in CA was rotated from
// elsewhere).
func gainedRoot(prev, next *certs.Bundle) bool {
	for _, r := range next.Roots {
		if !prev.Contains(r) {
			return true
		}
	}
	return false
}

// rootChangedLocked starts moving every certificate to a new root the
// issuer reported; retireLocked re-issues those still under an old root and
// retires the old roots (if the issuer keeps them) once the last has moved.
func (m *Manager) rootChangedLocked(ctx context.Context) {
	m.rotating = true
	m.log.InfoContext(ctx, "issuer root changed; re-issuing certificates under the new root")
	m.record(ctx, audit.Event{Kind: audit.RootRotated, Issuer: m.cfg.IssuerName, Reason: "new root in the issuer's bundle"})
}

func anyIssued(results []result) bool {
	for _, r := range results {
		if r.err == nil {
			return true
		}
	}
	return false
}

func (m *Manager) issueAll(ctx context.Context, due []spiffe.ID) []result {
	results := make([]result, len(due))
	if len(due) == 0 {
		return results
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(m.cfg.Concurrency)
	for i, id := range due {
		g.Go(func() error {
			actx, cancel := context.WithTimeout(gctx, m.cfg.IssueTimeout)
			defer cancel()
			c, err := m.cfg.Issuer.Issue(actx, certs.Request{ID: id, TTL: m.cfg.TTL, Names: m.cfg.Names[id]})
			results[i] = result{id: id, cert: c, err: err}
			return nil // one identity's failure must not cancel the others
		})
	}
	_ = g.Wait()
	return results
}

func (m *Manager) issuedLocked(ctx context.Context, now time.Time, r result, e *entry) {
	kind := audit.Issued
	if e.cert != nil {
		kind = audit.Rotated
	}
	lifetime := r.cert.NotAfter().Sub(now)
	share := m.cfg.RenewFraction - m.cfg.Jitter*m.cfg.Rand()
	e.cert = r.cert
	e.renewAt = now.Add(time.Duration(float64(lifetime) * share))
	e.failures, e.nextAttempt = 0, time.Time{}
	m.metrics.recordIssued(m.cfg.IssuerName, r.id, r.cert, kind == audit.Rotated)
	details := map[string]string{"renew_at": e.renewAt.UTC().Format(time.RFC3339Nano)}
	if r.cert.Capped {
		details["capped"] = fmt.Sprintf("requested %s, granted until %s", r.cert.Requested, r.cert.NotAfter().UTC().Format(time.RFC3339))
		m.log.WarnContext(ctx, "issuer capped certificate lifetime", "identity", r.id.String(),
			"requested", r.cert.Requested, "not_after", r.cert.NotAfter())
	}
	m.record(ctx, audit.Event{Kind: kind, Identity: r.id.String(), Serial: r.cert.Serial(),
		NotAfter: r.cert.NotAfter(), Issuer: m.cfg.IssuerName, Details: details})
}

func (m *Manager) failedLocked(ctx context.Context, now time.Time, r result, e *entry) {
	e.failures++
	backoff := m.cfg.MinBackoff << min(e.failures-1, 30)
	if backoff > m.cfg.MaxBackoff || backoff <= 0 {
		backoff = m.cfg.MaxBackoff
	}
	// Equal jitter: at least half the backoff, so retries stay spaced out,
	// and a random rest, so identities that failed together spread out.
	backoff = backoff/2 + time.Duration(m.cfg.Rand()*float64(backoff/2))
	e.nextAttempt = now.Add(backoff)
	close(m.failed)
	m.failed = make(chan struct{})
	m.metrics.failures.WithLabelValues(m.cfg.IssuerName).Inc()
	m.log.WarnContext(ctx, "issue certificate", "identity", r.id.String(), "error", r.err,
		"failures", e.failures, "retry_in", backoff, "serving_until", notAfterOrZero(e.cert))
	m.record(ctx, audit.Event{Kind: audit.Failed, Identity: r.id.String(), Issuer: m.cfg.IssuerName,
		Error: r.err.Error(), Details: map[string]string{"failures": fmt.Sprint(e.failures), "retry_in": backoff.String()}})
}

// dropExpiredLocked withdraws certificates that expired before they could be
// replaced: serving one would break every handshake, and no certificate is
// better than an invalid one.
func (m *Manager) dropExpiredLocked(ctx context.Context, now time.Time) bool {
	changed := false
	for id, e := range m.entries {
		if e.cert != nil && e.cert.ExpiredAt(now) {
			m.log.ErrorContext(ctx, "certificate expired before it could be replaced", "identity", id.String())
			m.record(ctx, audit.Event{Kind: audit.Expired, Identity: id.String(), Serial: e.cert.Serial(),
				NotAfter: e.cert.NotAfter(), Issuer: m.cfg.IssuerName})
			e.cert = nil
			m.metrics.forget(id)
			changed = true
		}
	}
	return changed
}

// retireLocked finishes a root rotation once every identity holds a
// certificate chaining to the newest root.
func (m *Manager) retireLocked(ctx context.Context, now time.Time) bool {
	if !m.rotating || m.bundle == nil || len(m.bundle.Roots) == 0 {
		return false
	}
	// The newest root is the last: issuers list roots oldest first.
	newest := certs.NewBundle(m.bundle.Roots[len(m.bundle.Roots)-1]).Pool()
	done := true
	for _, e := range m.entries {
		if e.cert == nil {
			done = false
			continue
		}
		inter := x509.NewCertPool()
		for _, c := range e.cert.Chain[1:] {
			inter.AddCert(c)
		}
		opts := x509.VerifyOptions{Roots: newest, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		if _, err := e.cert.Leaf.Verify(opts); err != nil {
			// Issued under the old root (in flight when the rotation
			// started): re-issue it rather than wait for its renewal.
			e.renewAt = time.Time{}
			done = false
		}
	}
	if !done {
		return false
	}
	rr, ok := m.cfg.Issuer.(certs.RootRetirer)
	if !ok {
		m.rotating = false // nothing to retire: the issuer keeps no old roots
		return false
	}
	if err := rr.RetirePreviousRoots(ctx); err != nil {
		m.log.WarnContext(ctx, "retire previous roots", "error", err)
		return false
	}
	b, err := m.cfg.Issuer.Bundle(ctx)
	if err != nil {
		m.log.WarnContext(ctx, "read trust bundle after retiring roots", "error", err)
		return false
	}
	m.bundle, m.rotating = b, false
	m.bundleGen++
	m.record(ctx, audit.Event{Kind: audit.RootRotated, Issuer: m.cfg.IssuerName, Reason: "previous roots retired"})
	return true
}

func (m *Manager) nextWakeLocked() time.Time {
	var next time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, e := range m.entries {
		if e.cert == nil {
			earliest(maxTime(e.nextAttempt, time.Unix(0, 1)))
			continue
		}
		// A zero renewAt means "now" (forced re-issue), not "never".
		earliest(maxTime(maxTime(e.renewAt, e.nextAttempt), time.Unix(0, 1)))
		earliest(e.cert.NotAfter())
	}
	return next
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (m *Manager) publishLocked(now time.Time) {
	m.version++
	snap := Snapshot{Version: m.version, Certs: make(map[spiffe.ID]*certs.Certificate, len(m.entries)), Bundle: m.bundle}
	for id, e := range m.entries {
		if e.cert != nil && !e.cert.ExpiredAt(now) {
			snap.Certs[id] = e.cert
		}
	}
	m.snap = snap
	m.metrics.version.Set(float64(m.version))
	if m.cfg.OnChange != nil {
		m.cfg.OnChange(snap)
	}
	for ch := range m.subs {
		select {
		case <-ch:
		default:
		}
		ch <- snap
	}
}

// freshLocked is the latest snapshot without certificates expired by now.
// It keeps the version: the loop wakes at every expiry and publishes a new
// version then, so this only covers readers racing that wake-up.
func (m *Manager) freshLocked(now time.Time) Snapshot {
	s := m.snap
	fresh := Snapshot{Version: s.Version, Bundle: s.Bundle, Certs: make(map[spiffe.ID]*certs.Certificate, len(s.Certs))}
	for id, c := range s.Certs {
		if !c.ExpiredAt(now) {
			fresh.Certs[id] = c
		}
	}
	return fresh
}

func (m *Manager) record(ctx context.Context, ev audit.Event) {
	if err := m.cfg.Audit.Record(ctx, ev); err != nil {
		m.log.ErrorContext(ctx, "audit", "error", err)
	}
}

func notAfterOrZero(c *certs.Certificate) time.Time {
	if c == nil {
		return time.Time{}
	}
	return c.NotAfter()
}
