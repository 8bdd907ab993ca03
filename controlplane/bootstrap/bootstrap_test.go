package bootstrap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/controlplane/model"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output:\n%s", path, got)
	}
}

var testTLS = TLS{
	CertFile: "/etc/maestro/identity/cert.pem", KeyFile: "/etc/maestro/identity/key.pem", CAFile: "/etc/maestro/identity/ca.pem",
	ServerID: spiffe.Must("maestro.local", "maestro-system", "controlplane"),
}

// testTokenTLS is a node without a certificate yet: it checks the control
// plane's certificate and authenticates with a token.
var testTokenTLS = TLS{CAFile: testTLS.CAFile, ServerID: testTLS.ServerID}

func TestGolden(t *testing.T) {
	tests := map[string]struct {
		cfg    Config
		render func(Config) ([]byte, error)
	}{
		"gateway.envoy.yaml": {Config{NodeID: "gw-1", Role: model.RoleGateway, XDSAddr: "127.0.0.1:18000"}, EnvoyYAML},
		"sidecar.envoy.json": {Config{NodeID: "fraud-7f9c", Role: model.RoleSidecar, Service: "fraud",
			XDSAddr: "maestro.mesh.svc:18000", AdminAddr: "127.0.0.1:15000"}, EnvoyJSON},
		"proxyless.grpc.json":    {Config{NodeID: "client-1", Role: model.RoleProxyless, Service: "frontend", XDSAddr: "127.0.0.1:18000"}, GRPC},
		"gateway-tls.envoy.yaml": {Config{NodeID: "gw-1", Role: model.RoleGateway, XDSAddr: "maestro.mesh.svc:18000", TLS: &testTLS}, EnvoyYAML},
		"proxyless-tls.grpc.json": {Config{NodeID: "client-1", Role: model.RoleProxyless, Service: "frontend",
			XDSAddr: "maestro.mesh.svc:18000", TLS: &testTLS}, GRPC},
		"proxyless-tls-spiffe.grpc.json": {Config{NodeID: "client-1", Role: model.RoleProxyless, Service: "frontend",
			XDSAddr: "maestro.mesh.svc:18000", TLS: &TLS{CertFile: testTLS.CertFile, KeyFile: testTLS.KeyFile, CAFile: testTLS.CAFile,
				ServerID: testTLS.ServerID, SPIFFEBundleMapFile: "/etc/maestro/identity/bundle-map.json"}}, GRPC},
		// A node's first certificate, fetched with a token over TLS that
		// checks only the control plane.
		"gateway-token.envoy.yaml": {Config{NodeID: "gw-1", Role: model.RoleGateway, XDSAddr: "127.0.0.1:18000",
			Token: "3f9c1e0d7a5b4c2e8f6a1b0c9d8e7f6a"}, EnvoyYAML},
		"sidecar-token-tls.envoy.yaml": {Config{NodeID: "fraud-7f9c", Role: model.RoleSidecar, Service: "fraud",
			XDSAddr: "maestro.mesh.svc:18000", Token: "3f9c1e0d7a5b4c2e8f6a1b0c9d8e7f6a", TLS: &testTokenTLS}, EnvoyYAML},
		"proxyless-token.grpc.json": {Config{NodeID: "client-1", Role: model.RoleProxyless, Service: "frontend",
			XDSAddr: "maestro.mesh.svc:18000", TokenFile: "/var/run/secrets/tokens/maestro-token", TLS: &TLS{CAFile: testTLS.CAFile,
				ServerID: testTLS.ServerID, SPIFFEBundleMapFile: "/etc/maestro/identity/bundle-map.json"}}, GRPC},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := tc.render(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name, got)
		})
	}
}

// TestEnvoyRoundTrip parses the YAML back into the bootstrap proto, as
// Envoy does, rejecting unknown fields.
func TestEnvoyRoundTrip(t *testing.T) {
	out, err := EnvoyYAML(Config{NodeID: "gw-1", Role: model.RoleGateway, XDSAddr: "10.0.0.1:18000"})
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(j, &b); err != nil {
		t.Fatal(err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	md := b.GetNode().GetMetadata().GetFields()
	if b.GetNode().GetId() != "gw-1" || md[model.MetadataRole].GetStringValue() != "gateway" {
		t.Errorf("node = %v", b.GetNode())
	}
	if got := b.GetStaticResources().GetClusters()[0].GetType().String(); got != "STATIC" {
		t.Errorf("an IP control plane address gives cluster type %s, want STATIC", got)
	}
}

// TestEnvoyTLSRoundTrip: the xDS cluster's transport socket decodes as
// Envoy would read it, with the files, h2 and the server's SPIFFE ID.
func TestEnvoyTLSRoundTrip(t *testing.T) {
	out, err := EnvoyYAML(Config{NodeID: "sc-1", Role: model.RoleSidecar, Service: "fraud", XDSAddr: "10.0.0.1:18000", TLS: &testTLS})
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(j, &b); err != nil {
		t.Fatal(err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	ts := b.GetStaticResources().GetClusters()[0].GetTransportSocket()
	if ts.GetName() != "envoy.transport_sockets.tls" {
		t.Fatalf("transport socket = %v", ts)
	}
	var up tlsv3.UpstreamTlsContext
	if err := ts.GetTypedConfig().UnmarshalTo(&up); err != nil {
		t.Fatal(err)
	}
	if err := up.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	common := up.GetCommonTlsContext()
	vc := common.GetValidationContext()
	cert := common.GetTlsCertificates()
	checks := map[string][2]string{
		"alpn":     {strings.Join(common.GetAlpnProtocols(), ","), "h2"},
		"chain":    {cert[0].GetCertificateChain().GetFilename(), testTLS.CertFile},
		"key":      {cert[0].GetPrivateKey().GetFilename(), testTLS.KeyFile},
		"ca":       {vc.GetTrustedCa().GetFilename(), testTLS.CAFile},
		"san":      {vc.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact(), "spiffe://maestro.local/ns/maestro-system/sa/controlplane"},
		"san type": {vc.GetMatchTypedSubjectAltNames()[0].GetSanType().String(), "URI"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
}

// TestGRPCWithoutTLSIsPlaintext: no TLS, no certificate providers, the
// insecure channel a --insecure control plane expects.
func TestGRPCWithoutTLSIsPlaintext(t *testing.T) {
	out, err := GRPC(Config{NodeID: "c", Role: model.RoleProxyless, XDSAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	if _, ok := v["certificate_providers"]; ok {
		t.Error("plaintext bootstrap has certificate_providers")
	}
	if !strings.Contains(string(out), `"type": "insecure"`) {
		t.Errorf("channel_creds are not insecure:\n%s", out)
	}
}

func TestGRPCIsValidJSON(t *testing.T) {
	out, err := GRPC(Config{NodeID: "c", Role: model.RoleProxyless, XDSAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Node struct {
			Metadata map[string]string `json:"metadata"`
		} `json:"node"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	if v.Node.Metadata[model.MetadataRole] != "proxyless" {
		t.Errorf("metadata = %v", v.Node.Metadata)
	}
}

func TestErrors(t *testing.T) {
	tests := map[string]struct {
		cfg    Config
		render func(Config) ([]byte, error)
		want   []string
	}{
		"no node":              {Config{Role: model.RoleGateway, XDSAddr: "127.0.0.1:1"}, EnvoyYAML, []string{"node: an ID is required"}},
		"bad role":             {Config{NodeID: "n", Role: "router", XDSAddr: "127.0.0.1:1"}, EnvoyYAML, []string{`role "router": want one of [gateway sidecar]`}},
		"proxyless for envoy":  {Config{NodeID: "n", Role: model.RoleProxyless, XDSAddr: "127.0.0.1:1"}, EnvoyJSON, []string{`role "proxyless"`}},
		"gateway for grpc":     {Config{NodeID: "n", Role: model.RoleGateway, XDSAddr: "127.0.0.1:1"}, GRPC, []string{`role "gateway": want one of [proxyless]`}},
		"sidecar no service":   {Config{NodeID: "n", Role: model.RoleSidecar, XDSAddr: "127.0.0.1:1"}, EnvoyYAML, []string{"service: a sidecar needs the service it fronts"}},
		"address without port": {Config{NodeID: "n", Role: model.RoleGateway, XDSAddr: "127.0.0.1"}, EnvoyYAML, []string{"xds address:"}},
		"port out of range":    {Config{NodeID: "n", Role: model.RoleGateway, XDSAddr: "h:70000"}, EnvoyYAML, []string{"port must be 1-65535"}},
		"bad admin":            {Config{NodeID: "n", Role: model.RoleGateway, XDSAddr: "h:1", AdminAddr: ":x"}, EnvoyYAML, []string{"admin address:"}},
		"all at once":          {Config{Role: model.RoleSidecar}, EnvoyYAML, []string{"node:", "service:", "xds address:"}},
		"tls without key": {Config{NodeID: "n", Role: model.RoleGateway, XDSAddr: "h:1",
			TLS: &TLS{CertFile: "c", CAFile: "a", ServerID: testTLS.ServerID}}, EnvoyYAML, []string{"tls key: a file is required"}},
		"grpc tls without files": {Config{NodeID: "n", Role: model.RoleProxyless, XDSAddr: "h:1", TLS: &TLS{}}, GRPC,
			[]string{"tls cert:", "tls key:", "tls ca:", "tls server id:"}},
		"grpc token without tls": {Config{NodeID: "n", Role: model.RoleProxyless, XDSAddr: "h:1", TokenFile: "/t"}, GRPC,
			[]string{"gRPC sends call credentials only over TLS"}},
		"grpc token inlined": {Config{NodeID: "n", Role: model.RoleProxyless, XDSAddr: "h:1", Token: "tok", TLS: &testTokenTLS}, GRPC,
			[]string{"gRPC reads its xDS token from a file"}},
		"envoy token file only": {Config{NodeID: "n", Role: model.RoleGateway, XDSAddr: "h:1", TokenFile: "/t"}, EnvoyYAML,
			[]string{"Envoy cannot read its xDS token from a file"}},
		"token with a line break": {Config{NodeID: "n", Role: model.RoleGateway, XDSAddr: "h:1", Token: "tok\nx-forged: 1"}, EnvoyYAML,
			[]string{"token: contains white space"}},
		"token, tls cert without key": {Config{NodeID: "n", Role: model.RoleGateway, XDSAddr: "h:1", Token: "tok",
			TLS: &TLS{CertFile: "c", CAFile: "a", ServerID: testTLS.ServerID}}, EnvoyYAML, []string{"tls key: a file is required"}},
		"token, tls without ca": {Config{NodeID: "n", Role: model.RoleProxyless, XDSAddr: "h:1", TokenFile: "/t",
			TLS: &TLS{ServerID: testTLS.ServerID}}, GRPC, []string{"tls ca: a file is required"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := tc.render(tc.cfg)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestSPIFFEBundleMap: the map parses back (with go-spiffe, as gRPC does)
// to the same roots for the trust domain; bad input names the problem.
func TestSPIFFEBundleMap(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	out, err := SPIFFEBundleMap(testTLS.ServerID, rootPEM)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		TrustDomains map[string]json.RawMessage `json:"trust_domains"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString("maestro.local")
	b, err := spiffebundle.Parse(td, doc.TrustDomains["maestro.local"])
	if err != nil {
		t.Fatalf("%v in\n%s", err, out)
	}
	if got := b.X509Authorities(); len(got) != 1 || !bytes.Equal(got[0].Raw, der) {
		t.Errorf("roots = %d certificates, want the one root", len(got))
	}

	errs := map[string]struct {
		id   spiffe.ID
		pem  []byte
		want string
	}{
		"empty":        {testTLS.ServerID, nil, "no PEM certificates"},
		"key not cert": {testTLS.ServerID, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), `PEM block 1 is "PRIVATE KEY"`},
		"garbage cert": {testTLS.ServerID, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), "PEM block 1:"},
		"bad id":       {spiffe.ID{}, rootPEM, "spiffe bundle map:"},
	}
	for name, tc := range errs {
		t.Run(name, func(t *testing.T) {
			_, err := SPIFFEBundleMap(tc.id, tc.pem)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzSPIFFEBundleMap: any ca.pem content gives a map or an error, never a
// panic, and a map always names the trust domain.
func FuzzSPIFFEBundleMap(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAQID\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte("not pem at all"))
	f.Fuzz(func(t *testing.T, caPEM []byte) {
		out, err := SPIFFEBundleMap(testTLS.ServerID, caPEM)
		if err != nil {
			return
		}
		if !bytes.Contains(out, []byte(`"maestro.local"`)) {
			t.Fatalf("map without the trust domain:\n%s", out)
		}
	})
}
