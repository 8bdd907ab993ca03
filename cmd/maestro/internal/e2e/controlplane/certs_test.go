package controlplane

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/certs/mtls"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

var (
	churnID = spiffe.Must("maestro.local", "ml", "churn")
)

// strictPolicy is examples/mesh.yaml with STRICT mTLS, the built-in CA's
// state in a temporary directory and the given certificate lifetime.
func strictPolicy(t testing.TB, ttl string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "examples", "mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := string(src)
	for _, r := range [][2]string{
		{"mode: PERMISSIVE", "mode: STRICT"},
		{"stateDir: .maestro/ca", "stateDir: " + filepath.Join(dir, "ca")},
		{"ttl: 24h", "ttl: " + ttl},
	} {
		if !strings.Contains(s, r[0]) {
			t.Fatalf("example has no %q to replace", r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	path := filepath.Join(dir, "mesh.yaml")
	write(t, path, s)
	return path
}

// mtlsPlane runs the control plane as `maestro controlplane` does: the
// issuer from the policy, xDS over mTLS with its own certificate, secrets
// guarded per peer.
func mtlsPlane(t testing.TB, path string) (*controlplane.Certificates, controlplane.Addrs) {
	t.Helper()
	return auditedPlane(t, path, nil)
}

// auditedPlane is mtlsPlane writing the audit trail to log.
func auditedPlane(t testing.TB, path string, log *audit.Log) (*controlplane.Certificates, controlplane.Addrs) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pm, err := policy.Load(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	reg := telemetry.NewRegistry()
	c, err := controlplane.OpenCertificates(pm.Config.Spec, controlplane.CertConfig{Registerer: reg, Audit: log,
		XDSNames: controlplane.XDSNames("127.0.0.1:0", nil)})
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan controlplane.Addrs, 1)
	done := make(chan error, 2)
	go func() { done <- c.Run(ctx) }()
	go func() {
		done <- controlplane.Run(ctx, controlplane.Config{
			Paths: []string{path}, Load: c.Loader(), Certs: c,
			GRPCOptions: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(c.ServerTLS()))},
			XDSAddr:     "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Registry: reg,
			Ready: func(a controlplane.Addrs) { ready <- a },
		})
	}()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("control plane: %v", err)
			}
		}
	})
	select {
	case a := <-ready:
		return c, a
	case err := <-done:
		t.Fatalf("control plane ended: %v", err)
	case <-time.After(waitLimit):
		t.Fatal("control plane not ready")
	}
	return nil, controlplane.Addrs{}
}

// mtlsADS opens an ADS stream presenting id's certificate (from the same
// issuer) and accepting only the control plane's identity.
func mtlsADS(t testing.TB, ctx context.Context, c *controlplane.Certificates, addr string, id spiffe.ID) discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	t.Helper()
	creds := credentials.NewTLS(mtls.ClientConfig(c.Manager(), id, spiffe.AllowIDs(c.Self())))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// secretWatch is a sidecar's SDS subscription to churn's certificate and
// the trust bundle, over mTLS as churn.
type secretWatch struct {
	t      testing.TB
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	req    *discoveryv3.DiscoveryRequest
}

func watchChurnSecrets(t testing.TB, ctx context.Context, c *controlplane.Certificates, addr string) *secretWatch {
	t.Helper()
	return &secretWatch{t: t, stream: mtlsADS(t, ctx, c, addr, churnID), req: &discoveryv3.DiscoveryRequest{
		Node: node(t, "churn-1", "sidecar", "churn"), TypeUrl: resource.SecretType,
		ResourceNames: []string{churnID.String(), model.TrustBundleSecret}}}
}

// next sends the pending request (the first, then the ACK of the last
// push) and returns the next push's certificate, verified against the
// pushed bundle, and the bundle. An expired certificate fails the test.
func (w *secretWatch) next() (*x509.Certificate, []byte) {
	t := w.t
	t.Helper()
	if err := w.stream.Send(w.req); err != nil {
		t.Fatal(err)
	}
	resp, err := w.stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	chains, bundles := secrets(t, resp)
	leaf := verifyLeaf(t, chains[churnID.String()], bundles[model.TrustBundleSecret], churnID)
	if !now.Before(leaf.NotAfter) {
		t.Fatalf("pushed an expired certificate (expired %v, received %v)", leaf.NotAfter, now)
	}
	w.req = &discoveryv3.DiscoveryRequest{TypeUrl: resource.SecretType, ResourceNames: w.req.ResourceNames,
		VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
	return leaf, bundles[model.TrustBundleSecret]
}

// waitRenewed reads pushes until one carries a certificate other than
// first issued after healed. Certificates live ttl; NotAfter is whole
// seconds and Vault backdates NotBefore, so the issue time is NotAfter
// less the lifetime.
func (w *secretWatch) waitRenewed(first *x509.Certificate, healed time.Time, ttl time.Duration) {
	w.t.Helper()
	for {
		leaf, _ := w.next()
		if leaf.SerialNumber.Cmp(first.SerialNumber) != 0 && leaf.NotAfter.Add(-ttl).After(healed.Add(-time.Second)) {
			return
		}
	}
}

// waitExpired waits until c's manager drops churn's certificate, which it
// does when the certificate expires unrenewed; ctx bounds the wait.
func waitExpired(t testing.TB, ctx context.Context, c *controlplane.Certificates) {
	t.Helper()
	for snap := range c.Manager().Subscribe(ctx) {
		if _, ok := snap.Certs[churnID]; !ok {
			return
		}
	}
	t.Fatal("certificate never expired during the outage")
}

// secrets decodes a SDS response: PEM chains and bundles by name.
func secrets(t testing.TB, resp *discoveryv3.DiscoveryResponse) (chains, bundles map[string][]byte) {
	t.Helper()
	chains, bundles = map[string][]byte{}, map[string][]byte{}
	for _, a := range resp.GetResources() {
		var s tlsv3.Secret
		if err := a.UnmarshalTo(&s); err != nil {
			t.Fatal(err)
		}
		if tc := s.GetTlsCertificate(); tc != nil {
			chains[s.GetName()] = tc.GetCertificateChain().GetInlineBytes()
		}
		if vc := s.GetValidationContext(); vc != nil {
			bundles[s.GetName()] = vc.GetTrustedCa().GetInlineBytes()
		}
	}
	return chains, bundles
}

// verifyLeaf checks chain's leaf against bundle and returns it; its URI
// SAN must be want.
func verifyLeaf(t testing.TB, chain, bundle []byte, want spiffe.ID) *x509.Certificate {
	t.Helper()
	var certsIn []*x509.Certificate
	for rest := chain; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certsIn = append(certsIn, c)
	}
	if len(certsIn) == 0 {
		t.Fatal("no certificate in the chain")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatal("no root in the bundle")
	}
	inter := x509.NewCertPool()
	for _, c := range certsIn[1:] {
		inter.AddCert(c)
	}
	leaf := certsIn[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("leaf does not verify against the bundle: %v", err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want.String() {
		t.Fatalf("leaf URIs %v, want %s", leaf.URIs, want)
	}
	return leaf
}

// TestMTLSNodeGetsOnlyItsOwnSecret: a sidecar with its own mTLS identity
// gets its certificate and the bundle over ADS, and the leaf verifies with
// the expected SPIFFE ID; asking for another identity's key is refused.
func TestMTLSNodeGetsOnlyItsOwnSecret(t *testing.T) {
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	f, err := os.Create(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	c, addrs := auditedPlane(t, strictPolicy(t, "1h"), audit.New(f, nil))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()

	stream := mtlsADS(t, ctx, c, addrs.XDS.String(), churnID)
	names := []string{churnID.String(), model.TrustBundleSecret}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node(t, "churn-1", "sidecar", "churn"),
		TypeUrl: resource.SecretType, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	chains, bundles := secrets(t, resp)
	if chains[churnID.String()] == nil || bundles[model.TrustBundleSecret] == nil {
		t.Fatalf("got certificates %d, bundles %d; want churn's and the trust bundle", len(chains), len(bundles))
	}
	verifyLeaf(t, chains[churnID.String()], bundles[model.TrustBundleSecret], churnID)

	// Another workload's identity, required by the same policy.
	other := ""
	for _, id := range c.Manager().Current().IDs() {
		if id != churnID && id != c.Self() {
			other = id.String()
			break
		}
	}
	if other == "" {
		t.Fatal("policy requires no other identity to ask for")
	}
	for _, tc := range []struct {
		name  string
		names []string
	}{
		{"other identity", []string{other}},
		{"wildcard", nil},
		{"own and other", []string{churnID.String(), other}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			s := mtlsADS(t, ctx, c, addrs.XDS.String(), churnID)
			if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node(t, "churn-2", "sidecar", "churn"),
				TypeUrl: resource.SecretType, ResourceNames: tc.names}); err != nil {
				t.Fatal(err)
			}
			resp, err := s.Recv()
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("got %v, err %v; want PERMISSION_DENIED", resp, err)
			}
		})
	}
	// The guard records before it answers, so every refusal is on file.
	trail, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(trail), `"event":"refused"`); n != 3 {
		t.Errorf("audit trail has %d refusals, want 3:\n%s", n, trail)
	}
	if !strings.Contains(string(trail), `"event":"issued"`) {
		t.Errorf("audit trail has no issuance:\n%s", trail)
	}
}

// TestPlaintextClientIsRejected: without a client certificate the mTLS
// port does not serve at all.
func TestPlaintextClientIsRejected(t *testing.T) {
	_, addrs := mtlsPlane(t, strictPolicy(t, "1h"))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	stream, err := adsConn(t, addrs.XDS.String()).StreamAggregatedResources(ctx)
	if err == nil {
		err = stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.SecretType, ResourceNames: []string{model.TrustBundleSecret}})
		if err == nil {
			_, err = stream.Recv()
		}
	}
	if err == nil {
		t.Fatal("plaintext client was served over the mTLS port")
	}
}

// TestRotatedSecretsArePushedBeforeExpiry: with a 3 s lifetime the client
// keeps ACKing and must see new certificate versions, each arriving before
// the one it replaces expires.
func TestRotatedSecretsArePushedBeforeExpiry(t *testing.T) {
	c, addrs := mtlsPlane(t, strictPolicy(t, "3s"))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	stream := mtlsADS(t, ctx, c, addrs.XDS.String(), churnID)
	names := []string{churnID.String(), model.TrustBundleSecret}
	req := &discoveryv3.DiscoveryRequest{Node: node(t, "churn-1", "sidecar", "churn"), TypeUrl: resource.SecretType, ResourceNames: names}
	var prev *x509.Certificate
	const want = 3 // distinct certificates observed
	seen := 0
	for seen < want {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %d certificates: %v", seen, err)
		}
		now := time.Now()
		chains, bundles := secrets(t, resp)
		leaf := verifyLeaf(t, chains[churnID.String()], bundles[model.TrustBundleSecret], churnID)
		if !now.Before(leaf.NotAfter) {
			t.Fatalf("pushed certificate expired at %v (received %v)", leaf.NotAfter, now)
		}
		if prev == nil || leaf.SerialNumber.Cmp(prev.SerialNumber) != 0 {
			if prev != nil && !now.Before(prev.NotAfter) {
				t.Fatalf("renewal arrived at %v, after the previous certificate expired at %v", now, prev.NotAfter)
			}
			prev = leaf
			seen++
		}
		req = &discoveryv3.DiscoveryRequest{TypeUrl: resource.SecretType, ResourceNames: names,
			VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
	}
}
