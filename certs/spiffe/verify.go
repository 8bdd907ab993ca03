package spiffe

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// ErrNotAllowed means a peer presented a valid SVID for an identity that is
// not permitted here.
var ErrNotAllowed = errors.New("spiffe id not allowed")

// Matcher decides whether a verified peer identity may connect. It returns
// nil to allow, or an error saying why not.
type Matcher func(ID) error

// AllowIDs allows exactly the given identities.
func AllowIDs(ids ...ID) Matcher {
	set := make(map[ID]struct{}, len(ids))
	for _, id := range ids {
		set[id] = struct{}{}
	}
	return func(id ID) error {
		if _, ok := set[id]; ok {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrNotAllowed, id)
	}
}

// AllowTrustDomain allows every identity of trust domain td. Servers that
// authorise per request (the xDS server deciding which secrets a node may
// receive) use it for the handshake and check the ID afterwards.
func AllowTrustDomain(td string) Matcher {
	return func(id ID) error {
		if id.TrustDomain == td {
			return nil
		}
		return fmt.Errorf("%w: %s is not in trust domain %q", ErrNotAllowed, id, td)
	}
}

// Verifier checks a peer's certificate chain against a trust bundle that may
// change at any time (root rotation), then its SPIFFE ID against Allow. Its
// VerifyPeerCertificate method fits tls.Config.VerifyPeerCertificate, used
// with InsecureSkipVerify (clients) or RequireAnyClientCert (servers) so that
// the bundle is read at handshake time rather than fixed in the config.
type Verifier struct {
	// Roots returns the current trust bundle. Required.
	Roots func() *x509.CertPool
	// Allow decides on the verified ID. Required.
	Allow Matcher
	// Now is the verification time; nil means time.Now.
	Now func() time.Time
}

// VerifyPeerCertificate implements the tls.Config hook.
func (v Verifier) VerifyPeerCertificate(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	_, err := v.Verify(rawCerts)
	return err
}

// Verify checks the DER chain rawCerts (leaf first) and returns the peer's ID.
func (v Verifier) Verify(rawCerts [][]byte) (ID, error) {
	if len(rawCerts) == 0 {
		return ID{}, errors.New("verify peer: no certificate presented")
	}
	if v.Roots == nil || v.Allow == nil {
		return ID{}, errors.New("verify peer: verifier has no roots or matcher")
	}
	chain := make([]*x509.Certificate, 0, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return ID{}, fmt.Errorf("verify peer: parse certificate %d: %w", i, err)
		}
		chain = append(chain, c)
	}
	leaf := chain[0]
	if leaf.IsCA {
		return ID{}, errors.New("verify peer: leaf is a CA certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{
		Roots:         v.Roots(),
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	if v.Now != nil {
		opts.CurrentTime = v.Now()
	}
	if _, err := leaf.Verify(opts); err != nil {
		return ID{}, fmt.Errorf("verify peer: %w", err)
	}
	id, err := FromCertificate(leaf)
	if err != nil {
		return ID{}, fmt.Errorf("verify peer: %w", err)
	}
	if err := v.Allow(id); err != nil {
		return ID{}, fmt.Errorf("verify peer: %w", err)
	}
	return id, nil
}
