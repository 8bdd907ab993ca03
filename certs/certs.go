// Package certs defines how Maestro obtains workload certificates: the Issuer
// interface its certificate authorities implement (the built-in CA in
// certs/localca, Vault PKI in certs/vault), and the Certificate and Bundle
// values they return, ready for SDS secrets and tls.Config.
package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/maestro-ml/maestro/certs/spiffe"
)

// DefaultTTL is the leaf lifetime asked for when a Request names none.
const DefaultTTL = time.Hour

// ErrUnavailable is wrapped by issuer errors that are worth retrying later
// (the CA is down, sealed, overloaded or slow), as opposed to a request the
// CA will never grant.
var ErrUnavailable = errors.New("issuer unavailable")

// Request asks for a leaf certificate for one identity.
type Request struct {
	ID spiffe.ID
	// TTL is the lifetime asked for; the issuer may grant less (see
	// Certificate.Capped). Zero means DefaultTTL.
	TTL time.Duration
	// Names are extra subject alternative names, for a certificate that
	// also serves clients which check a host name (gRPC's TLS channel
	// credentials do): the control plane's own.
	Names Names
}

// Names are DNS and IP subject alternative names.
type Names struct {
	DNS []string
	IPs []net.IP
}

// Issuer is a certificate authority that signs workload leaves.
//
// Implementations are safe for concurrent use.
type Issuer interface {
	// Issue returns a new leaf for req.ID with its private key, chain and
	// the trust bundle that verifies it.
	//
	// # Errors
	// Errors wrap ErrUnavailable when retrying later may succeed.
	Issue(ctx context.Context, req Request) (*Certificate, error)
	// Bundle returns the current trust bundle: every root a peer must accept,
	// which during a root rotation is more than one.
	Bundle(ctx context.Context) (*Bundle, error)
}

// RootRetirer is implemented by issuers whose bundle keeps previous roots
// after a root change (the built-in CA after RotateRoot; Vault after its
// issuer changes), so that peers holding older leaves stay trusted.
type RootRetirer interface {
	// RetirePreviousRoots drops every root but the current one from the
	// bundle. Callers do so only once no live leaf chains to an old root.
	RetirePreviousRoots(ctx context.Context) error
}

// RootRotator is implemented by issuers that can replace their own root
// (the built-in CA). Vault rotates its roots itself.
type RootRotator interface {
	RootRetirer
	// RotateRoot makes a new root the signer; the old one stays in the
	// bundle until RetirePreviousRoots.
	RotateRoot(ctx context.Context) error
}

// Certificate is an issued leaf with its key. It is immutable once built.
type Certificate struct {
	ID spiffe.ID
	// Leaf is Chain[0].
	Leaf *x509.Certificate
	// Chain is the leaf followed by any intermediates, not the root.
	Chain []*x509.Certificate
	// Key is the leaf's private key.
	Key crypto.Signer
	// Bundle verifies Chain.
	Bundle *Bundle
	// Requested is the TTL asked for.
	Requested time.Duration
	// Capped is true when the issuer granted noticeably less lifetime than
	// Requested (a Vault role's max_ttl, or the CA's own expiry).
	Capped bool

	chainPEM []byte
	keyPEM   []byte
	tlsCert  tls.Certificate
}

// NotAfter is the leaf's expiry.
func (c *Certificate) NotAfter() time.Time { return c.Leaf.NotAfter }

// NotBefore is the start of the leaf's validity.
func (c *Certificate) NotBefore() time.Time { return c.Leaf.NotBefore }

// Lifetime is the leaf's full validity period.
func (c *Certificate) Lifetime() time.Duration { return c.Leaf.NotAfter.Sub(c.Leaf.NotBefore) }

// Serial is the leaf's serial number in lower-case hex, colon-free.
func (c *Certificate) Serial() string { return fmt.Sprintf("%x", c.Leaf.SerialNumber) }

// ChainPEM is Chain as concatenated PEM CERTIFICATE blocks (the SDS
// tls_certificate.certificate_chain).
func (c *Certificate) ChainPEM() []byte { return c.chainPEM }

// KeyPEM is the private key as a PKCS#8 PEM block (the SDS
// tls_certificate.private_key). Never log it.
func (c *Certificate) KeyPEM() []byte { return c.keyPEM }

// TLSCertificate is the chain and key for tls.Config.GetCertificate.
func (c *Certificate) TLSCertificate() *tls.Certificate { return &c.tlsCert }

// ExpiredAt reports whether the leaf is no longer valid at t.
func (c *Certificate) ExpiredAt(t time.Time) bool { return !t.Before(c.Leaf.NotAfter) }

// Parts is what an issuer hands NewCertificate.
type Parts struct {
	ID spiffe.ID
	// Chain is leaf first, then intermediates.
	Chain []*x509.Certificate
	Key   crypto.Signer
	// Bundle verifies Chain.
	Bundle *Bundle
	// Requested is the TTL asked for and IssuedAt when it was asked; together
	// they tell whether the issuer capped the lifetime.
	Requested time.Duration
	IssuedAt  time.Time
}

// NewCertificate assembles and checks an issued leaf: the key must match the
// leaf, and the leaf must carry exactly p.ID as its SPIFFE ID.
func NewCertificate(p Parts) (*Certificate, error) {
	if len(p.Chain) == 0 {
		return nil, errors.New("assemble certificate: empty chain")
	}
	if p.Key == nil {
		return nil, errors.New("assemble certificate: no private key")
	}
	if p.Bundle == nil || len(p.Bundle.Roots) == 0 {
		return nil, errors.New("assemble certificate: empty trust bundle")
	}
	leaf := p.Chain[0]
	got, err := spiffe.FromCertificate(leaf)
	if err != nil {
		return nil, fmt.Errorf("assemble certificate: %w", err)
	}
	if got != p.ID {
		return nil, fmt.Errorf("assemble certificate: leaf is for %s, asked for %s", got, p.ID)
	}
	if !publicKeysEqual(leaf.PublicKey, p.Key.Public()) {
		return nil, errors.New("assemble certificate: private key does not match the leaf")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(p.Key)
	if err != nil {
		return nil, fmt.Errorf("assemble certificate: marshal key: %w", err)
	}
	c := &Certificate{
		ID:        p.ID,
		Leaf:      leaf,
		Chain:     p.Chain,
		Key:       p.Key,
		Bundle:    p.Bundle,
		Requested: p.Requested,
		Capped:    isCapped(p.Requested, p.IssuedAt, leaf.NotAfter),
		chainPEM:  EncodeCertificates(p.Chain),
		keyPEM:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	c.tlsCert = tls.Certificate{PrivateKey: p.Key, Leaf: leaf}
	for _, cert := range p.Chain {
		c.tlsCert.Certificate = append(c.tlsCert.Certificate, cert.Raw)
	}
	return c, nil
}

// isCapped compares the granted lifetime with the request, with a tolerance
// of a tenth (at most a minute, at least the one second X.509 times are
// rounded to) for rounding and clock differences; NotBefore is not used
// because CAs backdate it to absorb skew.
func isCapped(requested time.Duration, issuedAt, notAfter time.Time) bool {
	if requested <= 0 || issuedAt.IsZero() {
		return false
	}
	tolerance := max(min(requested/10, time.Minute), time.Second)
	return notAfter.Before(issuedAt.Add(requested - tolerance))
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := a.(equaler); ok {
		return e.Equal(b)
	}
	return false
}

// Bundle is a set of trusted roots, oldest first.
type Bundle struct {
	Roots []*x509.Certificate
}

// NewBundle returns a bundle of roots, dropping duplicates.
func NewBundle(roots ...*x509.Certificate) *Bundle {
	b := &Bundle{}
	for _, r := range roots {
		if r != nil && !b.Contains(r) {
			b.Roots = append(b.Roots, r)
		}
	}
	return b
}

// Contains reports whether cert is one of b's roots.
func (b *Bundle) Contains(cert *x509.Certificate) bool {
	for _, r := range b.Roots {
		if bytes.Equal(r.Raw, cert.Raw) {
			return true
		}
	}
	return false
}

// Equal reports whether b and o hold the same roots in the same order.
func (b *Bundle) Equal(o *Bundle) bool {
	if b == nil || o == nil {
		return b == o
	}
	if len(b.Roots) != len(o.Roots) {
		return false
	}
	for i := range b.Roots {
		if !bytes.Equal(b.Roots[i].Raw, o.Roots[i].Raw) {
			return false
		}
	}
	return true
}

// Pool returns the roots as a new x509.CertPool.
func (b *Bundle) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, r := range b.Roots {
		p.AddCert(r)
	}
	return p
}

// PEM is the roots as concatenated PEM blocks (the SDS
// validation_context.trusted_ca).
func (b *Bundle) PEM() []byte { return EncodeCertificates(b.Roots) }

// EncodeCertificates returns certs as concatenated PEM CERTIFICATE blocks.
func EncodeCertificates(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// ParseCertificates reads every PEM CERTIFICATE block in data, in order.
// what names the source in errors.
func ParseCertificates(what string, data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := bytes.TrimSpace(data)
	for n := 1; len(rest) > 0; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%s: PEM block %d: not PEM", what, n)
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %d: type %q, want CERTIFICATE", what, n, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d: %w", what, n, err)
		}
		out = append(out, c)
		rest = bytes.TrimSpace(rest)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no certificates", what)
	}
	return out, nil
}

// ParsePrivateKey reads a PEM private key in PKCS#8, SEC 1 (EC) or PKCS#1
// form, the three forms CAs and Vault hand out.
func ParsePrivateKey(what string, data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: not PEM", what)
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM type %q is not a private key", what, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key type %T cannot sign", what, key)
	}
	return s, nil
}
