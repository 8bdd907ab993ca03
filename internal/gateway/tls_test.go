package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// testCA issues SPIFFE certificates for the TLS test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for a SPIFFE ID.
func (ca *testCA) issue(t *testing.T, id string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// TestUpstreamMTLSFromSDS sends requests to an mTLS (h2) backend whose
// certificate must carry the SPIFFE ID the cluster names; the gateway's
// certificate and the bundle come over SDS. A backend with another ID is
// refused as Envoy refuses it.
func TestUpstreamMTLSFromSDS(t *testing.T) {
	ca := newTestCA(t)
	const fraudID, edgeID = "spiffe://example.org/ns/ml/sa/fraud", "spiffe://example.org/ns/ml/sa/edge"
	tlsBackend := func(id string) string {
		certPEM, keyPEM := ca.issue(t, id)
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert},
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.ProtoMajor != 2 || len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].URIs[0].String() != edgeID {
					w.WriteHeader(http.StatusForbidden)
					return
				}
				w.Header().Set("x-maestro-server", id)
			})}
		go func() { _ = srv.ServeTLS(ln, "", "") }()
		t.Cleanup(func() { _ = srv.Close() })
		return ln.Addr().String()
	}
	good, impostor := tlsBackend(fraudID), tlsBackend("spiffe://example.org/ns/ml/sa/other")

	tlsCluster := func(name string) *clusterv3.Cluster {
		c := edsCluster(t, name, true)
		c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: edgeID, SdsConfig: ads()}},
				ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: fraudID}}}}},
					ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "trust-bundle", SdsConfig: ads()}}}}})}}
		return c
	}
	certPEM, keyPEM := ca.issue(t, edgeID)
	res := resources(edgeListener(t), routeTable(prefixRoute("good", "/good", toCluster("good")), prefixRoute("impostor", "/impostor", toCluster("impostor"))),
		[]*clusterv3.Cluster{tlsCluster("good"), tlsCluster("impostor")},
		[]*endpointv3.ClusterLoadAssignment{endpoints(t, "good", good), endpoints(t, "impostor", impostor)})
	res[resource.SecretType] = append(res[resource.SecretType],
		&tlsv3.Secret{Name: edgeID, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: certPEM}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}}}}},
		&tlsv3.Secret{Name: "trust-bundle", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: ca.pem}}}}})
	cp := startFakeCP(t)
	cp.set(t, "gw", res)
	gw := startGateway(t, "gw", cp.addr, nil)
	base := "http://" + gw.waitLive(t)

	// LIVE waits for the SDS secrets, as Envoy's cluster warming does.
	for range 3 {
		if res, _ := get(t, http.DefaultClient, base+"/good"); res.StatusCode != http.StatusOK || res.Header.Get("x-maestro-server") != fraudID {
			t.Fatalf("mTLS to the fraud backend: got %d from %q", res.StatusCode, res.Header.Get("x-maestro-server"))
		}
	}
	if res, body := get(t, http.DefaultClient, base+"/impostor"); res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a backend with the wrong SPIFFE ID got %d %q, want 503", res.StatusCode, body)
	}
}
