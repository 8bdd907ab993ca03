// Package mtls builds the tls.Configs of Maestro's own mutually
// authenticated channels (the xDS server and its clients) from rotating
// workload certificates: the serving certificate is looked up per handshake,
// peers are verified against the current trust bundle, and the peer's SPIFFE
// ID is handed to the caller for authorisation.
package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

// ErrNoCertificate means the source holds no current certificate for the
// identity: not issued yet, or expired during an issuer outage.
var ErrNoCertificate = errors.New("no current certificate")

// ErrNoPeer means a connection carries no verified peer identity.
var ErrNoPeer = errors.New("no authenticated peer")

// Source supplies current certificates and the trust bundle;
// *rotation.Manager implements it.
type Source interface {
	// Certificate returns id's current unexpired certificate.
	Certificate(id spiffe.ID) (*certs.Certificate, bool)
	// Bundle returns the current trust bundle, or nil if none yet.
	Bundle() *certs.Bundle
}

// ServerConfig returns a TLS config serving self's current certificate and
// requiring a client certificate that verifies against the current bundle
// with an ID allow accepts. Rotation needs no restart: both are read per
// handshake.
func ServerConfig(src Source, self spiffe.ID, allow spiffe.Matcher) *tls.Config {
	v := spiffe.Verifier{Roots: roots(src), Allow: allow}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return current(src, self)
		},
		// Chain verification is done by VerifyPeerCertificate against the
		// bundle of the moment rather than a ClientCAs pool fixed here.
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: v.VerifyPeerCertificate,
	}
}

// ClientConfig returns a TLS config presenting self's current certificate and
// accepting a server whose certificate verifies against the current bundle
// with an ID server accepts.
func ClientConfig(src Source, self spiffe.ID, server spiffe.Matcher) *tls.Config {
	v := spiffe.Verifier{Roots: roots(src), Allow: server}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return current(src, self)
		},
		// Host-name checks do not apply to SPIFFE IDs; the verifier below
		// checks the chain and the URI SAN instead.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: v.VerifyPeerCertificate,
	}
}

// PeerID returns the SPIFFE ID of the verified peer of a connection.
func PeerID(cs tls.ConnectionState) (spiffe.ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return spiffe.ID{}, ErrNoPeer
	}
	id, err := spiffe.FromCertificate(cs.PeerCertificates[0])
	if err != nil {
		return spiffe.ID{}, fmt.Errorf("peer identity: %w", err)
	}
	return id, nil
}

// PeerIDFromContext returns the SPIFFE ID of the peer of a gRPC call served
// over credentials.NewTLS(ServerConfig(...)).
func PeerIDFromContext(ctx context.Context) (spiffe.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return spiffe.ID{}, ErrNoPeer
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return spiffe.ID{}, fmt.Errorf("%w: connection is not TLS (%s)", ErrNoPeer, p.AuthInfo.AuthType())
	}
	return PeerID(info.State)
}

// Static is a Source holding one fixed certificate and bundle, for clients
// that were handed their identity (tests, bootstrap files).
type Static struct {
	Cert *certs.Certificate
	// Trust defaults to Cert.Bundle.
	Trust *certs.Bundle
}

// Certificate implements Source.
func (s Static) Certificate(id spiffe.ID) (*certs.Certificate, bool) {
	if s.Cert == nil || s.Cert.ID != id {
		return nil, false
	}
	return s.Cert, true
}

// Bundle implements Source.
func (s Static) Bundle() *certs.Bundle {
	if s.Trust != nil {
		return s.Trust
	}
	if s.Cert != nil {
		return s.Cert.Bundle
	}
	return nil
}

func current(src Source, id spiffe.ID) (*tls.Certificate, error) {
	c, ok := src.Certificate(id)
	if !ok {
		return nil, fmt.Errorf("%w for %s", ErrNoCertificate, id)
	}
	return c.TLSCertificate(), nil
}

func roots(src Source) func() *x509.CertPool {
	return func() *x509.CertPool {
		if b := src.Bundle(); b != nil {
			return b.Pool()
		}
		return x509.NewCertPool()
	}
}
