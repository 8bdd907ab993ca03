package controlplane

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/controlplane/model"
)

// sidecarPolicy is a STRICT mesh of n services, each with a sidecar, so
// it needs n workload certificates from a fresh built-in CA in dir.
func sidecarPolicy(t testing.TB, dir string, n int) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: maestro.dev/v1alpha1
kind: Mesh
metadata: {name: bench}
spec:
  trustDomain: maestro.local
  mtls: {mode: STRICT}
  ca:
    issuer: builtin
    builtin: {stateDir: %s}
  certificates: {ttl: 1h}
`, filepath.Join(dir, "ca"))
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: svc%d, namespace: bench}
spec:
  protocol: grpc
  versions:
    - name: v1
      endpoints: [{address: 127.0.0.1, port: %d}]
---
apiVersion: maestro.dev/v1alpha1
kind: Sidecar
metadata: {name: svc%d, namespace: bench}
spec:
  service: svc%d
  inbound: {port: 15006, appPort: %d}
`, i, 10000+i, i, i, 10000+i)
	}
	path := filepath.Join(dir, "mesh.yaml")
	write(t, path, b.String())
	return path
}

// BenchmarkIssueAndPush1000: a control plane starting on a fresh built-in
// CA with a policy needing 1,000 identities: time until the snapshot holding
// all 1,000 certificates is served (issuance, translation and hand-over to
// the xDS server), and until a node then has its own secret over mTLS ADS.
func BenchmarkIssueAndPush1000(b *testing.B) {
	const n = 1000
	var ready, first time.Duration
	for range b.N {
		path := sidecarPolicy(b, b.TempDir(), n)
		start := time.Now()
		c, addrs := mtlsPlane(b, path)
		ready += time.Since(start)
		if got := len(c.Manager().Current().Certs); got < n {
			b.Fatalf("served with %d certificates, want %d", got, n)
		}
		id := spiffe.Must("maestro.local", "bench", "svc7")
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		t0 := time.Now()
		stream := mtlsADS(b, ctx, c, addrs.XDS.String(), id)
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node(b, "svc7-1", "sidecar", "svc7"),
			TypeUrl: resource.SecretType, ResourceNames: []string{id.String(), model.TrustBundleSecret}}); err != nil {
			b.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			b.Fatal(err)
		}
		first += time.Since(t0)
		cancel()
		if len(resp.GetResources()) != 2 {
			b.Fatalf("got %d secrets, want 2", len(resp.GetResources()))
		}
	}
	b.ReportMetric(ms(ready)/float64(b.N), "ms-to-served")
	b.ReportMetric(float64(n*b.N)/ready.Seconds(), "certs/s")
	b.ReportMetric(ms(first)/float64(b.N), "ms-first-secret")
	b.ReportMetric(0, "ns/op")
}
