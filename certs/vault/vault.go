// Package vault issues workload certificates from a Vault PKI secrets
// engine through github.com/hashicorp/vault/api: it logs in (token,
// AppRole or Kubernetes), keeps its token alive, asks pki/sign/<role> with a
// locally made key (the default: keys never leave Maestro) or
// pki/issue/<role>, reads the CA chain for the trust bundle, and reports
// when Vault grants less lifetime than asked.
package vault

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/maestro-ml/maestro/certs"
)

// Mode chooses the PKI endpoint.
type Mode string

const (
	// ModeSign sends a CSR to pki/sign/<role>; the key is made locally.
	ModeSign Mode = "sign"
	// ModeIssue asks pki/issue/<role>; Vault makes and returns the key.
	ModeIssue Mode = "issue"
)

// Config configures an Issuer. Address, Role and Auth are required.
type Config struct {
	// Address is Vault's URL, e.g. https://vault.example:8200.
	Address string
	// Namespace is the Vault Enterprise namespace, if any.
	Namespace string
	// CACert is a PEM file of CAs to verify Vault's TLS certificate.
	CACert string
	// Mount is the PKI mount path; "pki" when empty.
	Mount string
	// Role is the PKI role to issue with.
	Role string
	// Mode defaults to ModeSign.
	Mode Mode
	Auth Auth
	// Timeout bounds each request (default 30s).
	Timeout time.Duration
	// MaxRetries is the client's own retry count on 5xx; default 0,
	// because the rotation manager already backs off with jitter.
	MaxRetries int
	// Now is Maestro's clock for TTL-capping checks; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Issuer is a certs.Issuer backed by Vault PKI. Start Run to keep its token
// alive.
type Issuer struct {
	cfg    Config
	client *api.Client
	log    *slog.Logger

	loginMu sync.Mutex // one login at a time

	mu       sync.Mutex
	login    *api.Secret // the current token's auth secret; nil before login
	bundle   *certs.Bundle
	renewals int // successful token renewals, for Renewals
	// current are the roots of the chain Vault last returned.
	current []*x509.Certificate
}

var (
	_ certs.Issuer      = (*Issuer)(nil)
	_ certs.RootRetirer = (*Issuer)(nil)
)

// New returns an Issuer. It does not contact Vault: the first Issue (or
// Login) does, so a control plane can start while Vault is down and let the
// rotation manager retry.
func New(cfg Config) (*Issuer, error) {
	if cfg.Address == "" {
		return nil, errors.New("vault: address is required")
	}
	if _, err := url.Parse(cfg.Address); err != nil {
		return nil, fmt.Errorf("vault: address: %w", err)
	}
	if cfg.Role == "" {
		return nil, errors.New("vault: pki role is required")
	}
	if cfg.Auth == nil {
		return nil, errors.New("vault: an auth method is required (token, approle or kubernetes)")
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeSign
	case ModeSign, ModeIssue:
	default:
		return nil, fmt.Errorf("vault: mode %q: want sign or issue", cfg.Mode)
	}
	cfg.Mount = strings.Trim(orDefault(cfg.Mount, "pki"), "/")
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ac := api.DefaultConfig()
	if ac.Error != nil {
		return nil, fmt.Errorf("vault: client config: %w", ac.Error)
	}
	ac.Address = cfg.Address
	ac.Timeout = cfg.Timeout
	ac.MaxRetries = cfg.MaxRetries
	if cfg.CACert != "" {
		if err := ac.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("vault: tls: %w", err)
		}
	}
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("vault: client: %w", err)
	}
	// api.NewClient picks up VAULT_TOKEN; only the configured auth counts.
	client.ClearToken()
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
	}
	return &Issuer{
		cfg:    cfg,
		client: client,
		log:    cfg.Logger.With("component", "certs", "issuer", "vault", "vault_addr", cfg.Address, "auth", cfg.Auth.Name()),
	}, nil
}

// Login authenticates now. Issue logs in by itself when needed; calling
// Login at start-up surfaces bad credentials early.
func (i *Issuer) Login(ctx context.Context) error {
	return i.loginUnless(ctx, func(*api.Secret) bool { return false })
}

// loginUnless logs in unless done, checked under the login lock, says
// another caller already has.
func (i *Issuer) loginUnless(ctx context.Context, done func(*api.Secret) bool) error {
	i.loginMu.Lock()
	defer i.loginMu.Unlock()
	i.mu.Lock()
	cur := i.login
	i.mu.Unlock()
	if done(cur) {
		return nil
	}
	s, err := i.cfg.Auth.Login(ctx, i.client)
	if err != nil {
		return classify(fmt.Errorf("vault: %w", err))
	}
	i.mu.Lock()
	i.login = s
	i.mu.Unlock()
	i.log.InfoContext(ctx, "logged in to vault", "lease", time.Duration(s.Auth.LeaseDuration)*time.Second, "renewable", s.Auth.Renewable)
	return nil
}

func (i *Issuer) loggedIn() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.login != nil
}

// Renewals returns how many times the token has been renewed.
func (i *Issuer) Renewals() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.renewals
}

// Issue implements certs.Issuer.
func (i *Issuer) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	if err := req.ID.Validate(); err != nil {
		return nil, fmt.Errorf("vault: issue: %w", err)
	}
	if req.TTL <= 0 {
		req.TTL = certs.DefaultTTL
	}
	if err := i.loginUnless(ctx, func(cur *api.Secret) bool { return cur != nil }); err != nil {
		return nil, fmt.Errorf("vault: issue %s: %w", req.ID, err)
	}
	used := i.client.Token()
	c, err := i.issueOnce(ctx, req)
	var re *api.ResponseError
	if err != nil && errors.As(err, &re) && re.StatusCode == 403 && i.cfg.Auth.CanRelogin() {
		// The token expired or was revoked: log in again and retry once.
		// Concurrent issuances that saw the same refusal share one login.
		i.log.WarnContext(ctx, "vault refused the token; logging in again", "identity", req.ID.String())
		fresh := func(*api.Secret) bool { return i.client.Token() != used }
		if lerr := i.loginUnless(ctx, fresh); lerr != nil {
			return nil, fmt.Errorf("vault: issue %s: %w", req.ID, lerr)
		}
		c, err = i.issueOnce(ctx, req)
	}
	if err != nil {
		return nil, fmt.Errorf("vault: issue %s: %w", req.ID, classify(err))
	}
	return c, nil
}

func (i *Issuer) issueOnce(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	body := map[string]any{
		"uri_sans": req.ID.String(),
		"ttl":      fmt.Sprintf("%ds", int64(math.Ceil(req.TTL.Seconds()))),
		"format":   "pem",
	}
	// Vault takes extra names from the request body in both modes (and
	// from the CSR only when the role sets use_csr_sans).
	if len(req.Names.DNS) > 0 {
		body["alt_names"] = strings.Join(req.Names.DNS, ",")
	}
	if len(req.Names.IPs) > 0 {
		ips := make([]string, len(req.Names.IPs))
		for k, ip := range req.Names.IPs {
			ips[k] = ip.String()
		}
		body["ip_sans"] = strings.Join(ips, ",")
	}
	var key *ecdsa.PrivateKey
	path := i.cfg.Mount + "/" + string(i.cfg.Mode) + "/" + i.cfg.Role
	if i.cfg.Mode == ModeSign {
		var err error
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			URIs: []*url.URL{req.ID.URL()}, DNSNames: req.Names.DNS, IPAddresses: req.Names.IPs}, key)
		if err != nil {
			return nil, fmt.Errorf("make csr: %w", err)
		}
		body["csr"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	} else {
		body["private_key_format"] = "pkcs8"
	}
	now := i.cfg.Now()
	s, err := i.client.Logical().WriteWithContext(ctx, path, body)
	if err != nil {
		return nil, err
	}
	if s == nil || s.Data == nil {
		return nil, fmt.Errorf("%s: empty response", path)
	}
	for _, w := range s.Warnings {
		i.log.WarnContext(ctx, "vault warning", "path", path, "identity", req.ID.String(), "warning", w)
	}
	leafPEM, _ := s.Data["certificate"].(string)
	leaves, err := certs.ParseCertificates(path+" certificate", []byte(leafPEM))
	if err != nil {
		return nil, err
	}
	chain, roots, err := splitChain(path, s.Data)
	if err != nil {
		return nil, err
	}
	var signer crypto.Signer = key
	if i.cfg.Mode == ModeIssue {
		keyPEM, _ := s.Data["private_key"].(string)
		k, err := certs.ParsePrivateKey(path+" private_key", []byte(keyPEM))
		if err != nil {
			return nil, err
		}
		signer = k
	}
	bundle := i.updateBundle(roots)
	c, err := certs.NewCertificate(certs.Parts{
		ID:        req.ID,
		Chain:     append(leaves[:1], chain...),
		Key:       signer,
		Bundle:    bundle,
		Requested: req.TTL,
		IssuedAt:  now,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.Capped {
		i.log.WarnContext(ctx, "vault capped the certificate lifetime (role or mount max_ttl)", "identity", req.ID.String(),
			"requested", req.TTL, "granted_until", c.NotAfter())
	}
	return c, nil
}

// splitChain reads ca_chain (or issuing_ca) into intermediates, which go in
// the served chain, and self-signed roots, which go in the bundle.
func splitChain(path string, data map[string]any) (inter, roots []*x509.Certificate, err error) {
	var pems []string
	if list, ok := data["ca_chain"].([]any); ok {
		for _, v := range list {
			if s, ok := v.(string); ok {
				pems = append(pems, s)
			}
		}
	}
	if len(pems) == 0 {
		if s, ok := data["issuing_ca"].(string); ok && s != "" {
			pems = append(pems, s)
		}
	}
	if len(pems) == 0 {
		return nil, nil, fmt.Errorf("%s: response has neither ca_chain nor issuing_ca", path)
	}
	all, err := certs.ParseCertificates(path+" ca_chain", []byte(strings.Join(pems, "\n")))
	if err != nil {
		return nil, nil, err
	}
	inter, roots = partition(all)
	return inter, roots, nil
}

// partition splits CA certificates into intermediates and self-signed
// roots. A chain without a root (the mount is an intermediate whose root
// lives elsewhere) trusts its topmost certificate.
func partition(all []*x509.Certificate) (inter, roots []*x509.Certificate) {
	for _, c := range all {
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			roots = append(roots, c)
		} else {
			inter = append(inter, c)
		}
	}
	if len(roots) == 0 && len(inter) > 0 {
		roots = []*x509.Certificate{inter[len(inter)-1]}
	}
	return inter, roots
}

// updateBundle records the roots of the chain Vault just returned. Roots
// seen before stay in the bundle (until they expire or RetirePreviousRoots)
// so that peers holding leaves from before a Vault root change keep being
// trusted; the newest roots come last.
func (i *Issuer) updateBundle(roots []*x509.Certificate) *certs.Bundle {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.current = roots
	latest := certs.NewBundle(roots...)
	now := i.cfg.Now()
	var keep []*x509.Certificate
	if i.bundle != nil {
		for _, r := range i.bundle.Roots {
			if !latest.Contains(r) && now.Before(r.NotAfter) {
				keep = append(keep, r)
			}
		}
	}
	b := certs.NewBundle(append(keep, roots...)...)
	if !b.Equal(i.bundle) {
		i.bundle = b
	}
	return i.bundle
}

// RetirePreviousRoots implements certs.RootRetirer: the bundle shrinks to
// the roots of the chain Vault last returned. The rotation manager calls it
// once every leaf chains to those.
func (i *Issuer) RetirePreviousRoots(context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if len(i.current) > 0 {
		i.bundle = certs.NewBundle(i.current...)
	}
	return nil
}

// Bundle implements certs.Issuer: the roots of pki/ca_chain, read once and
// then kept current by every issuance.
func (i *Issuer) Bundle(ctx context.Context) (*certs.Bundle, error) {
	i.mu.Lock()
	b := i.bundle
	i.mu.Unlock()
	if b != nil {
		return b, nil
	}
	path := i.cfg.Mount + "/ca_chain"
	resp, err := i.client.Logical().ReadRawWithContext(ctx, path)
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("vault: read %s: %w", path, classify(err))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("vault: read %s: %w", path, classify(err))
	}
	all, err := certs.ParseCertificates("vault "+path, body)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	_, roots := partition(all)
	return i.updateBundle(roots), nil
}

// Health returns Vault's sys/health.
func (i *Issuer) Health(ctx context.Context) (*api.HealthResponse, error) {
	h, err := i.client.Sys().HealthWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("vault: health: %w", classify(err))
	}
	return h, nil
}

// classify marks errors worth retrying (no answer from Vault: connection
// refused or reset, timeouts; or 5xx, 429, 412) with certs.ErrUnavailable.
// Local errors (a missing credential) and refusals are left as they are.
func classify(err error) error {
	if err == nil || errors.Is(err, certs.ErrUnavailable) {
		return err
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		if re.StatusCode >= 500 || re.StatusCode == 429 || re.StatusCode == 412 {
			return fmt.Errorf("%w: %w", certs.ErrUnavailable, err)
		}
		return err
	}
	var ue *url.Error
	var ne net.Error
	if errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", certs.ErrUnavailable, err)
	}
	return err
}

// Run keeps the token alive until ctx ends: it renews the lease with a
// vault/api LifetimeWatcher and, when the token reaches its max TTL or
// renewal fails, logs in again (AppRole, Kubernetes) with exponential
// backoff and jitter. A static token that cannot be renewed is reported once.
func (i *Issuer) Run(ctx context.Context) error {
	backoff := time.Second
	for {
		if !i.loggedIn() {
			if err := i.Login(ctx); err != nil {
				i.log.WarnContext(ctx, "vault login failed", "error", err, "retry_in", backoff)
				if !sleep(ctx, backoff) {
					return nil
				}
				backoff = min(backoff*2, time.Minute)
				continue
			}
			backoff = time.Second
		}
		i.mu.Lock()
		secret := i.login
		i.mu.Unlock()
		if secret.Auth.LeaseDuration <= 0 {
			<-ctx.Done() // a token without TTL never needs renewing
			return nil
		}
		if err := i.watch(ctx, secret); err != nil {
			return nil
		}
		if !i.cfg.Auth.CanRelogin() {
			i.log.ErrorContext(ctx, "vault token can no longer be renewed and static tokens cannot log in again; issuance will fail once it expires")
			<-ctx.Done()
			return nil
		}
		i.mu.Lock()
		if i.login == secret {
			i.login = nil // log in again at the top of the loop
		}
		i.mu.Unlock()
	}
}

// watch renews secret until it cannot be renewed any more (nil) or ctx ends
// (ctx's error).
func (i *Issuer) watch(ctx context.Context, secret *api.Secret) error {
	w, err := i.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: secret})
	if err != nil {
		i.log.WarnContext(ctx, "vault token watcher", "error", err)
		return nil
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-w.DoneCh():
			if err != nil {
				i.log.WarnContext(ctx, "vault token renewal stopped", "error", err)
			} else {
				i.log.InfoContext(ctx, "vault token reached its max TTL")
			}
			return nil
		case r := <-w.RenewCh():
			i.mu.Lock()
			i.renewals++
			i.mu.Unlock()
			lease := 0
			if r.Secret != nil && r.Secret.Auth != nil {
				lease = r.Secret.Auth.LeaseDuration
			}
			i.log.DebugContext(ctx, "renewed vault token", "lease", time.Duration(lease)*time.Second)
		}
	}
}

// sleep waits d with ±20% jitter, or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	d = time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
