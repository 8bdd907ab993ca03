package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

// tlsConfig builds the client TLS of a cluster from its SDS secrets, as
// Envoy's UpstreamTlsContext does: the node's certificate, the trust
// bundle, and the server's URI SAN checked against the allowed ones (no
// host name check: SPIFFE certificates carry none). Missing secrets give
// a config whose handshakes fail, as a cluster still warming would.
func tlsConfig(t *xdsconfig.UpstreamTLS, secrets map[string]*xdsconfig.Secret) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true} // verified below
	if s := secrets[t.CertSecret]; s != nil && t.CertSecret != "" {
		if cert, err := tls.X509KeyPair(s.CertChain, s.Key); err == nil {
			cfg.Certificates = []tls.Certificate{cert}
		}
	}
	roots := x509.NewCertPool()
	ca := secrets[t.CASecret]
	if ca != nil {
		roots.AppendCertsFromPEM(ca.TrustedCA)
	}
	sans := slices.Clone(t.URISANs)
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if ca == nil {
			return fmt.Errorf("trust bundle %q not received", t.CASecret)
		}
		if len(raw) == 0 {
			return errors.New("no server certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, r := range raw {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return err
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return err
		}
		if len(sans) == 0 {
			return nil
		}
		for _, u := range certs[0].URIs {
			if slices.Contains(sans, u.String()) {
				return nil
			}
		}
		return fmt.Errorf("server certificate has no URI SAN in %v", sans)
	}
	return cfg
}
