// Package localca is Maestro's built-in certificate authority, the default
// issuer: an ECDSA P-256 root (optionally with an intermediate that does the
// signing) kept in a state directory, so that a restarted control plane
// keeps the trust root every sidecar already holds.
//
// State directory layout (keys are written 0600, the directory 0700):
//
//	root.pem, root-key.pem                  current root
//	intermediate.pem, intermediate-key.pem  signing intermediate, if enabled
//	previous-roots.pem                      roots kept in the bundle during a rotation
//	*.pem.new                               a certificate whose key is being replaced
//	ca.lock                                 held (flock) while state is created or changed
//
// Several processes may share one state directory (control-plane
// replicas started together): creating, rotating and retiring roots hold
// the directory's lock, and a process that finds a root already created
// reads it instead of making its own, so all of them end with one root.
package localca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

// Defaults for Config's zero values.
const (
	DefaultRootTTL         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateTTL = 365 * 24 * time.Hour
	DefaultMaxTTL          = 7 * 24 * time.Hour
	// backdate absorbs clock skew between the CA and the peers verifying.
	backdate = time.Minute
)

const (
	rootFile         = "root.pem"
	rootKeyFile      = "root-key.pem"
	interFile        = "intermediate.pem"
	interKeyFile     = "intermediate-key.pem"
	previousRootFile = "previous-roots.pem"
)

// Config configures the CA. TrustDomain is required.
type Config struct {
	// Dir is the state directory; it is created if missing. Empty keeps
	// the CA in memory only (tests, benchmarks), so a restart makes a new
	// root.
	Dir string
	// TrustDomain names the CA's certificates and bounds what it issues:
	// it refuses IDs of other trust domains.
	TrustDomain string
	// Intermediate makes the root sign only an intermediate, which signs
	// leaves; the root key is then used once per rotation.
	Intermediate bool
	// RootTTL, IntermediateTTL and MaxTTL (the longest leaf) default to the
	// Default* constants.
	RootTTL, IntermediateTTL, MaxTTL time.Duration
	// Now is the CA's clock; nil means time.Now.
	Now func() time.Time
}

// CA is the built-in certificate authority. It implements certs.Issuer and
// certs.RootRotator and is safe for concurrent use.
type CA struct {
	cfg Config

	mu       sync.RWMutex
	root     *x509.Certificate
	rootKey  crypto.Signer
	inter    *x509.Certificate // nil without an intermediate
	interKey crypto.Signer
	previous []*x509.Certificate
	bundle   *certs.Bundle
}

var (
	_ certs.Issuer      = (*CA)(nil)
	_ certs.RootRotator = (*CA)(nil)
)

// Open loads the CA from cfg.Dir, creating a root (and intermediate) on
// first use.
//
// # Errors
// Unreadable or inconsistent state (a key that does not match its
// certificate, a non-CA root) is an error naming the file; Open never
// silently replaces a root, since that would break every peer's trust.
func Open(cfg Config) (*CA, error) {
	if cfg.TrustDomain == "" {
		return nil, errors.New("local ca: trust domain is required")
	}
	if _, err := spiffe.New(cfg.TrustDomain, "x", "x"); err != nil {
		return nil, fmt.Errorf("local ca: trust domain: %w", err)
	}
	if cfg.RootTTL <= 0 {
		cfg.RootTTL = DefaultRootTTL
	}
	if cfg.IntermediateTTL <= 0 {
		cfg.IntermediateTTL = DefaultIntermediateTTL
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ca := &CA{cfg: cfg}
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("local ca: state directory: %w", err)
		}
		// The directory holds private keys; tighten one that already existed.
		if err := os.Chmod(cfg.Dir, 0o700); err != nil && !isReadOnly(err) {
			return nil, fmt.Errorf("local ca: state directory: %w", err)
		}
		// Held from reading to writing, so that of replicas starting
		// together on a fresh directory one creates the root and the
		// others read it. A read-only directory (a mounted Secret) can
		// only be read, so there is nothing to race on.
		unlock, err := lockDir(cfg.Dir)
		switch {
		case err != nil && isReadOnly(err):
		case err != nil:
			return nil, err
		default:
			defer unlock()
		}
	}
	loaded, err := ca.load()
	if err != nil {
		return nil, err
	}
	if !loaded {
		if err := ca.newRoot(); err != nil {
			return nil, err
		}
	}
	if err := ca.ensureIntermediate(); err != nil {
		return nil, err
	}
	ca.bundle = certs.NewBundle(append(append([]*x509.Certificate{}, ca.previous...), ca.root)...)
	return ca, nil
}

// Root returns the current root certificate.
func (ca *CA) Root() *x509.Certificate {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	return ca.root
}

// Bundle implements certs.Issuer.
func (ca *CA) Bundle(context.Context) (*certs.Bundle, error) {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	return ca.bundle, nil
}

// Issue implements certs.Issuer: a fresh P-256 key and a leaf for req.ID,
// valid for both server and client authentication, capped at MaxTTL and at
// the signer's own expiry.
func (ca *CA) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local ca: issue %s: %w", req.ID, err)
	}
	if err := req.ID.Validate(); err != nil {
		return nil, fmt.Errorf("local ca: issue: %w", err)
	}
	if req.ID.TrustDomain != ca.cfg.TrustDomain {
		return nil, fmt.Errorf("local ca: issue %s: trust domain is not %q", req.ID, ca.cfg.TrustDomain)
	}
	ttl := req.TTL
	if ttl <= 0 {
		ttl = certs.DefaultTTL
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("local ca: issue %s: generate key: %w", req.ID, err)
	}
	ca.mu.RLock()
	signer, signerKey, chainTail, bundle := ca.root, ca.rootKey, []*x509.Certificate(nil), ca.bundle
	if ca.inter != nil {
		signer, signerKey, chainTail = ca.inter, ca.interKey, []*x509.Certificate{ca.inter}
	}
	ca.mu.RUnlock()

	now := ca.cfg.Now()
	// X.509 times have whole seconds; round up so the leaf lives at least
	// as long as asked (a 3s leaf issued at .9 would otherwise get 2.1s).
	notAfter := ceilSecond(now.Add(min(ttl, ca.cfg.MaxTTL)))
	if notAfter.After(signer.NotAfter) {
		notAfter = signer.NotAfter
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("local ca: issue %s: %w", req.ID, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{ca.cfg.TrustDomain}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{req.ID.URL()},
		DNSNames:              req.Names.DNS,
		IPAddresses:           req.Names.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, fmt.Errorf("local ca: issue %s: sign: %w", req.ID, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("local ca: issue %s: parse: %w", req.ID, err)
	}
	return certs.NewCertificate(certs.Parts{
		ID:        req.ID,
		Chain:     append([]*x509.Certificate{leaf}, chainTail...),
		Key:       key,
		Bundle:    bundle,
		Requested: ttl,
		IssuedAt:  now,
	})
}

// RotateRoot implements certs.RootRotator: a new root (and intermediate)
// signs from now on; the old root stays in the bundle, and on disk, until
// RetirePreviousRoots.
func (ca *CA) RotateRoot(context.Context) error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	unlock, err := ca.lock()
	if err != nil {
		return fmt.Errorf("local ca: rotate root: %w", err)
	}
	defer unlock()
	old := ca.root
	previous := append(append([]*x509.Certificate{}, ca.previous...), old)
	// Persist the old root as "previous" first: a crash after this point
	// leaves a bundle with one root too many, never one too few.
	if err := ca.writeFile(previousRootFile, certs.EncodeCertificates(previous), 0o644); err != nil {
		return fmt.Errorf("local ca: rotate root: %w", err)
	}
	ca.previous = previous
	if err := ca.newRoot(); err != nil {
		return fmt.Errorf("local ca: rotate root: %w", err)
	}
	ca.inter, ca.interKey = nil, nil
	if err := ca.ensureIntermediate(); err != nil {
		return fmt.Errorf("local ca: rotate root: %w", err)
	}
	ca.bundle = certs.NewBundle(append(append([]*x509.Certificate{}, ca.previous...), ca.root)...)
	return nil
}

// RetirePreviousRoots implements certs.RootRotator.
func (ca *CA) RetirePreviousRoots(context.Context) error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if len(ca.previous) == 0 {
		return nil
	}
	if ca.cfg.Dir != "" {
		unlock, err := ca.lock()
		if err != nil {
			return fmt.Errorf("local ca: retire previous roots: %w", err)
		}
		defer unlock()
		err = os.Remove(filepath.Join(ca.cfg.Dir, previousRootFile))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("local ca: retire previous roots: %w", err)
		}
	}
	ca.previous = nil
	ca.bundle = certs.NewBundle(ca.root)
	return nil
}

// load reads existing state; false means there is none yet.
func (ca *CA) load() (bool, error) {
	if ca.cfg.Dir == "" {
		return false, nil
	}
	root, rootKey, err := ca.readPair(rootFile, rootKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !root.IsCA {
		return false, fmt.Errorf("local ca: %s: not a CA certificate", ca.path(rootFile))
	}
	ca.root, ca.rootKey = root, rootKey
	if data, err := os.ReadFile(ca.path(previousRootFile)); err == nil {
		prev, err := certs.ParseCertificates(ca.path(previousRootFile), data)
		if err != nil {
			return false, fmt.Errorf("local ca: %w", err)
		}
		ca.previous = prev
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("local ca: %w", err)
	}
	if !ca.cfg.Intermediate {
		return true, nil
	}
	inter, interKey, err := ca.readPair(interFile, interKeyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, err
	case inter.CheckSignatureFrom(root) != nil || !ca.cfg.Now().Before(inter.NotAfter):
		// Signed by an older root or expired: ensureIntermediate replaces it.
	default:
		ca.inter, ca.interKey = inter, interKey
	}
	return true, nil
}

func (ca *CA) readPair(certName, keyName string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(ca.path(certName))
	if err != nil {
		return nil, nil, fmt.Errorf("local ca: %w", err)
	}
	keyPEM, err := os.ReadFile(ca.path(keyName))
	if err != nil {
		return nil, nil, fmt.Errorf("local ca: %w", err)
	}
	list, err := certs.ParseCertificates(ca.path(certName), certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("local ca: %w", err)
	}
	key, err := certs.ParsePrivateKey(ca.path(keyName), keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("local ca: %w", err)
	}
	if matches(list[0], key) {
		return list[0], key, nil
	}
	// A crash between persist's renames leaves the new key beside the old
	// certificate, with the new certificate pending: finish the swap.
	if pendingPEM, err := os.ReadFile(ca.path(certName + pendingSuffix)); err == nil {
		if pending, err := certs.ParseCertificates(ca.path(certName+pendingSuffix), pendingPEM); err == nil && matches(pending[0], key) {
			if err := os.Rename(ca.path(certName+pendingSuffix), ca.path(certName)); err != nil {
				return nil, nil, fmt.Errorf("local ca: complete interrupted write of %s: %w", certName, err)
			}
			return pending[0], key, nil
		}
	}
	return nil, nil, fmt.Errorf("local ca: %s does not match %s", ca.path(keyName), ca.path(certName))
}

func matches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}

// newRoot makes and persists a root. Callers hold mu or own ca exclusively.
func (ca *CA) newRoot() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("local ca: generate root key: %w", err)
	}
	now := ca.cfg.Now()
	tmpl, err := caTemplate(fmt.Sprintf("maestro root %s %s", ca.cfg.TrustDomain, now.UTC().Format("20060102T150405Z")), now, ca.cfg.RootTTL, &key.PublicKey)
	if err != nil {
		return err
	}
	cert, err := sign(tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("local ca: self-sign root: %w", err)
	}
	if err := ca.persist(rootFile, rootKeyFile, cert, key); err != nil {
		return err
	}
	ca.root, ca.rootKey = cert, key
	return nil
}

// ensureIntermediate makes an intermediate if one is configured and missing.
func (ca *CA) ensureIntermediate() error {
	if !ca.cfg.Intermediate || ca.inter != nil {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("local ca: generate intermediate key: %w", err)
	}
	now := ca.cfg.Now()
	ttl := ca.cfg.IntermediateTTL
	if end := ca.root.NotAfter.Sub(now); ttl > end {
		ttl = end
	}
	tmpl, err := caTemplate("maestro intermediate "+ca.cfg.TrustDomain, now, ttl, &key.PublicKey)
	if err != nil {
		return err
	}
	tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
	cert, err := sign(tmpl, ca.root, &key.PublicKey, ca.rootKey)
	if err != nil {
		return fmt.Errorf("local ca: sign intermediate: %w", err)
	}
	if err := ca.persist(interFile, interKeyFile, cert, key); err != nil {
		return err
	}
	ca.inter, ca.interKey = cert, key
	return nil
}

func caTemplate(cn string, now time.Time, ttl time.Duration, pub *ecdsa.PublicKey) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("local ca: marshal public key: %w", err)
	}
	ski := sha1.Sum(pubDER)
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"maestro"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski[:],
	}, nil
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

// newSerial returns a random positive 128-bit serial, as RFC 5280 and the
// CA/B baseline ask (at least 64 bits of entropy).
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// pendingSuffix marks a certificate written before its key replaced the old
// one; readPair completes the swap after a crash between the two renames.
const pendingSuffix = ".new"

// persist writes a certificate and its key. Two files cannot be replaced
// atomically together, so the certificate goes to a pending file first, then
// the key replaces the old one, then the pending certificate is renamed into
// place; readPair finishes an interrupted swap.
func (ca *CA) persist(certName, keyName string, cert *x509.Certificate, key crypto.Signer) error {
	if ca.cfg.Dir == "" {
		return nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("local ca: marshal key: %w", err)
	}
	if err := ca.writeFile(certName+pendingSuffix, certs.EncodeCertificates([]*x509.Certificate{cert}), 0o644); err != nil {
		return err
	}
	if err := ca.writeFile(keyName, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := os.Rename(ca.path(certName+pendingSuffix), ca.path(certName)); err != nil {
		return fmt.Errorf("local ca: write %s: %w", certName, err)
	}
	return nil
}

// writeFile replaces name atomically (temp file and rename) with mode.
func (ca *CA) writeFile(name string, data []byte, mode os.FileMode) error {
	if ca.cfg.Dir == "" {
		return nil
	}
	f, err := os.CreateTemp(ca.cfg.Dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("local ca: write %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("local ca: write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("local ca: write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("local ca: write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("local ca: write %s: %w", name, err)
	}
	if err := os.Rename(tmp, ca.path(name)); err != nil {
		return fmt.Errorf("local ca: write %s: %w", name, err)
	}
	return nil
}

func (ca *CA) path(name string) string { return filepath.Join(ca.cfg.Dir, name) }

// lockFile is the state directory's lock (see lockDir).
const lockFile = "ca.lock"

func dirLockPath(dir string) string { return filepath.Join(dir, lockFile) }

// lock takes the state directory's lock; a CA without one has nothing to
// share.
func (ca *CA) lock() (func(), error) {
	if ca.cfg.Dir == "" {
		return func() {}, nil
	}
	return lockDir(ca.cfg.Dir)
}
