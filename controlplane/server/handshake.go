package server

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"

	"google.golang.org/grpc/credentials"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

// Handshake failure reasons, as metric label values.
const (
	handshakeNoCert        = "no_certificate"
	handshakeUnknownCA     = "unknown_authority"
	handshakeExpired       = "expired"
	handshakeInvalid       = "invalid_certificate"
	handshakeNotAllowed    = "identity_not_allowed"
	handshakeNoHandshake   = "no_handshake"
	handshakeNotTLS        = "not_tls"
	handshakeOtherProblems = "other"
)

// WatchHandshakes wraps the xDS port's TLS credentials so that every
// refused handshake (a client without a certificate, one from another CA,
// an expired one, an identity of another trust domain) is logged, audited
// and counted in maestro_controlplane_tls_handshake_failures_total by
// reason. Connections closed before any handshake (TCP probes, port
// scans) are counted but logged at debug only and not audited.
func (s *Server) WatchHandshakes(creds credentials.TransportCredentials) credentials.TransportCredentials {
	return &watchedCreds{TransportCredentials: creds, s: s}
}

type watchedCreds struct {
	credentials.TransportCredentials
	s *Server
}

// ServerHandshake implements credentials.TransportCredentials.
func (c *watchedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		c.s.handshakeFailed(raw.RemoteAddr(), err)
	}
	return conn, info, err
}

// Clone implements credentials.TransportCredentials.
func (c *watchedCreds) Clone() credentials.TransportCredentials {
	return &watchedCreds{TransportCredentials: c.TransportCredentials.Clone(), s: c.s}
}

func (s *Server) handshakeFailed(remote net.Addr, err error) {
	reason := handshakeReason(err)
	s.metrics.handshakes.WithLabelValues(reason).Inc()
	addr := ""
	if remote != nil {
		addr = remote.String()
	}
	if reason == handshakeNoHandshake {
		s.log.Debug("xDS connection closed before its TLS handshake", "remote", addr, "error", err)
		return
	}
	s.log.Warn("refused a TLS handshake on the xDS port", "remote", addr, "reason", reason, "error", err)
	ev := audit.Event{Kind: audit.Refused, Peer: addr, Reason: "tls_handshake_" + reason, Error: err.Error(),
		Details: map[string]string{"remote": addr, "reason": reason}}
	if aerr := s.audit.Record(context.Background(), ev); aerr != nil {
		s.log.Error("audit", "error", aerr)
	}
}

// handshakeReason classifies a failed server handshake.
func handshakeReason(err error) string {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	msg := err.Error()
	switch {
	case errors.As(err, &unknown):
		return handshakeUnknownCA
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return handshakeExpired
	case errors.As(err, &invalid):
		return handshakeInvalid
	case errors.Is(err, spiffe.ErrNotAllowed):
		return handshakeNotAllowed
	// crypto/tls says "client didn't provide a certificate"; the SPIFFE
	// verifier "no certificate presented".
	case strings.Contains(msg, "didn't provide a certificate"), strings.Contains(msg, "no certificate presented"):
		return handshakeNoCert
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return handshakeNotTLS // a plaintext client: --insecure on one side only
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return handshakeNoHandshake
	default:
		return handshakeOtherProblems
	}
}
