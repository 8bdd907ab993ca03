package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/certs/mtls"
	"github.com/maestro-ml/maestro/certs/rotation"
	"github.com/maestro-ml/maestro/certs/secretauth"
	"github.com/maestro-ml/maestro/certs/setup"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/certs/vault"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// DefaultCertWait bounds how long a load waits for certificates the
// policy newly needs before it is rejected (the last good set stays
// served); far above one issuance, short enough to report a down issuer.
const DefaultCertWait = 10 * time.Second

// The control plane's own identity, in the policy's trust domain, serving
// xDS over mTLS.
const (
	SelfNamespace = "maestro-system"
	SelfAccount   = "controlplane"
)

// ErrCARestart is returned when an edit changes the trust domain, the CA
// or certificate settings of a running control plane: the issuer (and the
// xDS port's own certificate) is opened once, at start.
var ErrCARestart = errors.New("spec.trustDomain, spec.ca and spec.certificates take effect only after a restart of the control plane")

// ErrCertsPending is wrapped by a load that found a certificate it needs
// not yet issued (the issuer is down, sealed or slow). Before any load has
// succeeded the control plane serves nothing and is not ready; after, it
// keeps the last good configuration. Either way the rotation manager keeps
// retrying with backoff and the load re-runs when certificates arrive.
var ErrCertsPending = errors.New("certificates not yet issued")

// CertConfig configures OpenCertificates. All fields are optional.
type CertConfig struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Audit receives issuance, rotation, refusal and policy change events.
	Audit *audit.Log
	// Wait defaults to DefaultCertWait.
	Wait time.Duration
	// XDSNames are the DNS names and IPs clients dial the xDS port by. The
	// control plane's certificate carries them beside its SPIFFE ID, so
	// that clients which check a host name (gRPC's "tls" channel
	// credentials) accept it. See XDSNames.
	XDSNames certs.Names
	// DryRun checks the issuer settings but issues from a throw-away
	// in-memory CA (setup.Options.DryRun): for `maestro validate`.
	DryRun bool
	// Plaintext says the xDS port is served without TLS (--insecure):
	// the control plane's own certificate then gates neither the first
	// load nor readiness.
	Plaintext bool
	// MinBackoff and MaxBackoff bound the retry delay after a failed
	// issuance; zero keeps rotation.DefaultMinBackoff/DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// BootstrapTokens map tokens to the identities whose secrets a node
	// presenting one ("authorization: Bearer <token>") may fetch before
	// it holds a certificate (secretauth.ParseTokens reads a file of
	// them). With tokens, the mTLS xDS port also admits handshakes without
	// a client certificate; the guard then refuses streams with neither.
	BootstrapTokens map[string][]spiffe.ID
	// TokenReviewer, when set, accepts Kubernetes service-account tokens
	// as bearer tokens too (certs/tokenreview): the account is the
	// node's identity, as Istio's CA names workloads. Like bootstrap
	// tokens, it lets the mTLS port admit handshakes without a client
	// certificate.
	TokenReviewer secretauth.TokenReviewer
}

// XDSNames returns the names to put in the control plane's certificate for
// a listen address and any extra names: the address's host (an IP, or a
// DNS name), and for a wildcard or empty host the loopback addresses and
// "localhost". Extra entries that parse as IPs are IPs, the rest DNS names.
func XDSNames(listenAddr string, extra []string) certs.Names {
	var n certs.Names
	add := func(h string) {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(n.IPs, ip.Equal) {
				n.IPs = append(n.IPs, ip)
			}
		} else if h != "" && !slices.Contains(n.DNS, h) {
			n.DNS = append(n.DNS, h)
		}
	}
	host, _, err := net.SplitHostPort(listenAddr)
	if err != nil {
		host = listenAddr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		add("127.0.0.1")
		add("::1")
		add("localhost")
	} else {
		add(host)
	}
	for _, e := range extra {
		add(e)
	}
	return n
}

// Certificates issue and rotate the mesh's workload certificates with the
// issuer the policy's spec.ca selects (certs/setup, certs/rotation), and
// hand the control plane's own xDS certificate and the per-stream secret
// guard to the server.
type Certificates struct {
	cfg     CertConfig
	spec    policy.MeshSpec
	self    spiffe.ID
	running *setup.Running

	// loaded is set by the first load that had every certificate it
	// needed; until then a missing certificate fails a load at the
	// issuer's first error instead of after Wait.
	loaded atomic.Bool
	// pending holds the last load's certificate error, nil after a load
	// with every certificate (see Ready).
	pending atomic.Pointer[error]
	// served maps the certificates the xDS cache serves to their expiry
	// (see available); next is the same for the last good load, which
	// becomes served once the control plane has applied it (Applied).
	served, next atomic.Pointer[map[string]time.Time]

	mu sync.Mutex
	// retired are roots that left the issuer's bundle and when they were
	// last in it: they stay in the pushed bundle for one certificate
	// lifetime more, since leaves they signed may still be in use on
	// nodes that have not received their renewal yet.
	retired map[string]retiredRoot
}

type retiredRoot struct {
	cert     *x509.Certificate
	lastSeen time.Time
}

// SetupOptions turns a policy's Mesh settings into certs/setup options:
// issuer, trust domain, lifetimes, and Vault's address, PKI role and login
// (credentials only ever named by environment variable or file).
func SetupOptions(spec policy.MeshSpec) (setup.Options, error) {
	o := setup.Options{
		TrustDomain:   spec.TrustDomain,
		TTL:           spec.Certificates.TTL.D(),
		RenewFraction: spec.Certificates.RotateAt,
	}
	switch spec.CA.Issuer {
	case "", policy.IssuerBuiltin:
		o.Issuer = setup.IssuerLocal
		o.Local.StateDir = ".maestro/ca"
		if b := spec.CA.Builtin; b != nil {
			if b.StateDir != "" {
				o.Local.StateDir = b.StateDir
			}
			o.Local.RootTTL = b.RootTTL.D()
		}
	case policy.IssuerVault:
		v := spec.CA.Vault
		if v == nil {
			return o, errors.New("spec.ca.vault: required when spec.ca.issuer is vault")
		}
		o.Issuer = setup.IssuerVault
		o.Vault = setup.VaultOptions{
			Address: v.Address, CACert: v.CACert, Mount: or(v.PKIMount, "pki"), Role: v.Role,
			Mode: or(v.Mode, policy.VaultIssue), Auth: or(v.Auth.Method, policy.AuthToken),
		}
		a, ov := v.Auth, &o.Vault
		switch ov.Auth {
		case policy.AuthToken:
			ov.TokenEnv, ov.TokenFile = or(a.Token.Env, "VAULT_TOKEN"), a.Token.File
			if a.Token.File != "" {
				ov.TokenEnv = ""
			}
		case policy.AuthAppRole:
			ov.AppRoleMount = or(a.Mount, policy.AuthAppRole)
			ov.RoleIDEnv, ov.RoleIDFile = a.RoleID.Env, a.RoleID.File
			ov.SecretIDEnv, ov.SecretIDFile = a.SecretID.Env, a.SecretID.File
		case policy.AuthKubernetes:
			ov.KubernetesMount, ov.KubernetesRole = or(a.Mount, policy.AuthKubernetes), a.Role
			ov.JWTFile = or(a.JWT.File, vault.DefaultServiceAccountTokenFile)
		default:
			return o, fmt.Errorf("spec.ca.vault.auth.method %q: want token, approle or kubernetes", ov.Auth)
		}
	default:
		return o, fmt.Errorf("spec.ca.issuer %q: want builtin or vault", spec.CA.Issuer)
	}
	return o, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// OpenCertificates opens the issuer spec selects and its rotation manager;
// nothing is issued until Run. The control plane's own identity
// (SelfNamespace/SelfAccount) is always kept issued.
//
// # Errors
// Invalid CA settings, naming the spec field, or an issuer that cannot be
// opened (unreadable CA state, missing Vault credentials).
func OpenCertificates(spec policy.MeshSpec, cfg CertConfig) (*Certificates, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultCertWait
	}
	opts, err := SetupOptions(spec)
	if err != nil {
		return nil, err
	}
	self, err := spiffe.New(spec.TrustDomain, SelfNamespace, SelfAccount)
	if err != nil {
		return nil, fmt.Errorf("spec.trustDomain: %w", err)
	}
	opts.Always = []spiffe.ID{self}
	opts.Names = map[spiffe.ID]certs.Names{self: cfg.XDSNames}
	opts.DryRun, opts.MinBackoff, opts.MaxBackoff = cfg.DryRun, cfg.MinBackoff, cfg.MaxBackoff
	running, err := opts.Start(setup.Deps{Logger: cfg.Logger, Registerer: cfg.Registerer, Audit: cfg.Audit})
	if err != nil {
		return nil, err
	}
	c := &Certificates{cfg: cfg, spec: spec, self: self, running: running, retired: map[string]retiredRoot{}}
	never := error(fmt.Errorf("%w: no load yet", ErrCertsPending))
	c.pending.Store(&never)
	return c, nil
}

// WithCertificates is how every command gets certificates, so that
// `maestro controlplane`, `validate`, `validate --output` and `up` share
// one path: it reads the CA settings of the policy at paths once,
// opens them (OpenCertificates), keeps them issued while fn runs and
// returns fn's error. fn's loader is c.Loader().
//
// # Errors
// The policy's problems (a policy.ErrorList), the issuer's settings, or
// fn's error.
func WithCertificates(ctx context.Context, paths []string, cfg CertConfig, fn func(ctx context.Context, c *Certificates) error) error {
	pm, err := policy.Load(ctx, paths...)
	if err != nil {
		return fmt.Errorf("initial load: %w", err)
	}
	c, err := OpenCertificates(pm.Config.Spec, cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.Run(gctx) })
	g.Go(func() error {
		defer cancel() // fn is done: stop issuing
		return fn(gctx, c)
	})
	return g.Wait()
}

// Ready reports whether every certificate the control plane needs is
// current: its own (unless xDS is plaintext) and every one the last load
// needed. It is part of the admin port's /readyz.
func (c *Certificates) Ready() error {
	if !c.cfg.Plaintext {
		if _, ok := c.running.Manager.Certificate(c.self); !ok {
			return fmt.Errorf("%w: no current certificate for the control plane's own identity %s", ErrCertsPending, c.self)
		}
	}
	if p := c.pending.Load(); p != nil && *p != nil {
		return *p
	}
	return nil
}

// Run issues and renews certificates until ctx ends.
func (c *Certificates) Run(ctx context.Context) error { return c.running.Run(ctx) }

// Manager is the rotation manager whose snapshots the control plane
// translates into SDS secrets.
func (c *Certificates) Manager() *rotation.Manager { return c.running.Manager }

// Self is the control plane's own identity.
func (c *Certificates) Self() spiffe.ID { return c.self }

// ServerTLS is the xDS port's mTLS configuration: the control plane's own
// rotating certificate, client certificates required and verified against
// the current bundle, any identity of the trust domain admitted (which
// secrets it gets is the guard's decision).
func (c *Certificates) ServerTLS() *tls.Config {
	cfg := mtls.ServerConfig(c.running.Manager, c.self, spiffe.AllowTrustDomain(c.spec.TrustDomain))
	if len(c.cfg.BootstrapTokens) > 0 || c.cfg.TokenReviewer != nil {
		// A node with only a token has no certificate yet. The
		// handshake lets it in; the guard admits its stream only with a
		// known token. A certificate that is presented is still verified.
		verify := cfg.VerifyPeerCertificate
		cfg.ClientAuth = tls.RequestClientCert
		cfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return nil
			}
			return verify(raw, chains)
		}
	}
	return cfg
}

// Guard returns the per-stream secret guard: a node receives the trust
// bundle and only the certificates of its client certificate's identity,
// or of the identities its token names. Over plaintext xDS (plaintext
// true) a stream with neither is admitted for configuration but gets no
// certificate; under mTLS it is refused.
func (c *Certificates) Guard(plaintext bool) (*secretauth.Guard, error) {
	return secretauth.New(secretauth.Config{
		TrustDomain: c.spec.TrustDomain, Shared: []string{model.TrustBundleSecret},
		Tokens: c.cfg.BootstrapTokens, Reviewer: c.cfg.TokenReviewer, Anonymous: plaintext,
		Available:  c.available,
		Registerer: c.cfg.Registerer, Audit: c.cfg.Audit, Logger: c.cfg.Logger,
	})
}

// Applied tells c that the control plane now serves the result of the
// last successful load: from then on its certificates are the ones
// available checks.
func (c *Certificates) Applied() {
	if n := c.next.Load(); n != nil {
		c.served.Store(n)
	}
}

// available refuses a certificate of the last good configuration that has
// expired: the issuer was down when it was due, and the xDS cache would
// otherwise hand it, expired, to a stream that asks for it anew (also in
// the moment between a renewal and the load that serves it). A secret not
// in the served configuration is nothing stale: the request waits for the
// load that adds it.
func (c *Certificates) available(name string) error {
	served := c.served.Load()
	if served == nil {
		return nil
	}
	notAfter, ok := (*served)[name]
	if !ok || time.Now().Before(notAfter) {
		return nil
	}
	return fmt.Errorf("%w: the served certificate expired at %s before the issuer could renew it",
		ErrCertsPending, notAfter.UTC().Format(time.RFC3339))
}

// Loader returns the Loader of a control plane using c: policy.Load, the
// identities it needs declared to the rotation manager, then model.Build
// with the manager's current certificates and bundle. A load waits (up to
// CertConfig.Wait) for identities not yet issued; it never uses an expired
// certificate, since the manager's snapshots hold none.
func (c *Certificates) Loader() Loader {
	// One policy.Loader across reloads re-parses only the documents that
	// changed: at 10,000 routes a reload is ~0.13 s of CPU instead of ~2.4 s.
	pl := &policy.Loader{}
	return func(ctx context.Context, paths []string) (*model.Mesh, []string, error) {
		pm, err := pl.Load(ctx, paths...)
		if err != nil {
			return nil, nil, err
		}
		pm = overlaid(ctx, pm) // rollout and adaptive weights (overlay.go)
		if !sameCA(pm.Config.Spec, c.spec) {
			return nil, nil, ErrCARestart
		}
		names := model.RequiredSecrets(pm)
		ids := make([]spiffe.ID, 0, len(names))
		for _, n := range names {
			if n == model.TrustBundleSecret {
				continue
			}
			id, err := spiffe.Parse(n)
			if err != nil {
				return nil, nil, fmt.Errorf("secret %q: %w", n, err)
			}
			ids = append(ids, id)
		}
		c.running.Manager.SetIdentities(ids)
		// The xDS port's own certificate gates the first load too: under
		// mTLS nothing can be served without it.
		want := ids
		if !c.cfg.Plaintext {
			want = append(slices.Clone(ids), c.self)
		}
		var secrets []model.Secret
		expiry := map[string]time.Time{}
		if len(want) > 0 {
			snap, err := c.await(ctx, want, !c.loaded.Load())
			if err != nil {
				err = fmt.Errorf("certificates: %w", err)
				c.pending.Store(&err)
				return nil, nil, err
			}
			if len(names) > 0 {
				secrets = secretsOf(snap, c.bundle(snap.Bundle, time.Now()), names)
			}
			for _, id := range ids {
				expiry[id.String()] = snap.Certs[id].NotAfter()
			}
		}
		m, err := model.Build(pm, model.BuildOptions{Secrets: secrets, Observer: observerOf(ctx)})
		if err != nil {
			return nil, nil, err
		}
		var none error
		c.pending.Store(&none)
		c.loaded.Store(true)
		c.next.Store(&expiry)
		return m, pm.Files(), nil
	}
}

// await returns the first manager snapshot holding a certificate for every
// id and a bundle. It waits up to Wait; with failFast (no load has
// succeeded yet, so there is nothing to keep serving meanwhile) it gives
// up at the issuer's first failure, and the load re-runs when the manager
// has the certificates.
//
// # Errors
// ErrCertsPending, naming the first identity without a certificate.
func (c *Certificates) await(ctx context.Context, ids []spiffe.ID, failFast bool) (rotation.Snapshot, error) {
	if s := c.running.Manager.Current(); complete(s, ids) {
		return s, nil
	}
	var failed <-chan struct{}
	if failFast {
		failed = c.running.Manager.NextFailure()
	}
	wctx, cancel := context.WithTimeout(ctx, c.cfg.Wait)
	defer cancel()
	snaps := c.running.Manager.Subscribe(wctx)
	last := c.running.Manager.Current()
	why := fmt.Sprintf("after %s (is the issuer reachable?)", c.cfg.Wait)
wait:
	for {
		select {
		case s, ok := <-snaps:
			if !ok {
				break wait
			}
			if complete(s, ids) {
				return s, nil
			}
			last = s
		case <-failed:
			why = "the issuer is failing; retrying with backoff"
			cancel()
			last = c.running.Manager.Current()
			if complete(last, ids) {
				return last, nil
			}
			break wait
		}
	}
	if err := ctx.Err(); err != nil {
		return last, err
	}
	for _, id := range ids {
		if _, ok := last.Certs[id]; !ok {
			return last, fmt.Errorf("%w: no current certificate for %s %s", ErrCertsPending, id, why)
		}
	}
	return last, fmt.Errorf("%w: no trust bundle %s", ErrCertsPending, why)
}

func complete(s rotation.Snapshot, ids []spiffe.ID) bool {
	if s.Bundle == nil {
		return false
	}
	for _, id := range ids {
		if _, ok := s.Certs[id]; !ok {
			return false
		}
	}
	return true
}

// secretsOf names the snapshot's certificates by SPIFFE ID, and its
// bundle (every root it trusts, so a root rotation keeps both) by
// TrustBundleSecret.
func secretsOf(s rotation.Snapshot, bundle *certs.Bundle, names []string) []model.Secret {
	out := make([]model.Secret, 0, len(names))
	for _, n := range names {
		if n == model.TrustBundleSecret {
			out = append(out, model.Secret{Name: n, TrustBundle: bundle.PEM()})
			continue
		}
		id, _ := spiffe.Parse(n) // parsed by the caller
		cert := s.Certs[id]
		out = append(out, model.Secret{Name: n, Certificate: &model.Certificate{ChainPEM: cert.ChainPEM(), KeyPEM: cert.KeyPEM()}})
	}
	return out
}

// bundle is the issuer's bundle plus the roots that left it less than a
// certificate lifetime ago (oldest first, as certs.Bundle keeps them).
func (c *Certificates) bundle(cur *certs.Bundle, now time.Time) *certs.Bundle {
	c.mu.Lock()
	defer c.mu.Unlock()
	inCur := map[string]bool{}
	for _, r := range cur.Roots {
		inCur[string(r.Raw)] = true
		c.retired[string(r.Raw)] = retiredRoot{cert: r, lastSeen: now}
	}
	var old []*x509.Certificate
	for k, r := range c.retired {
		switch {
		case inCur[k]:
		case now.Sub(r.lastSeen) > c.spec.Certificates.TTL.D() || !now.Before(r.cert.NotAfter):
			delete(c.retired, k)
		default:
			old = append(old, r.cert)
		}
	}
	slices.SortFunc(old, func(a, b *x509.Certificate) int { return a.NotBefore.Compare(b.NotBefore) })
	return certs.NewBundle(append(old, cur.Roots...)...)
}

// sameCA reports whether a and b agree on everything the issuer was opened
// with.
func sameCA(a, b policy.MeshSpec) bool {
	oa, erra := SetupOptions(a)
	ob, errb := SetupOptions(b)
	return erra == nil && errb == nil && fmt.Sprint(oa) == fmt.Sprint(ob)
}

// followCerts re-runs the load after every change of the rotation
// manager's snapshot (renewal, expiry, bundle change), so clients get
// renewed certificates as a new SDS version; a load that changes nothing
// pushes nothing.
func (cp *plane) followCerts(ctx context.Context) error {
	// The first snapshot may be newer than the one the initial load used,
	// so it is loaded too; an unchanged result pushes nothing.
	for range cp.cfg.Certs.Manager().Subscribe(ctx) {
		cp.refresh(ctx)
	}
	return nil
}
