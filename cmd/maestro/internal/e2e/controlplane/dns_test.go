package controlplane

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/inference/inferencetest"
)

// TestProxylessLogicalDNS checks a host-name endpoint end to end: version
// v1 is addressed as localhost, so the control plane sends it as a
// LOGICAL_DNS cluster that gRPC-Go resolves itself, next to v2 over EDS; a
// real proxyless client must reach both in the policy's proportions.
func TestProxylessLogicalDNS(t *testing.T) {
	v1 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1"})
	v2 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v2"})
	dir := t.TempDir()
	meshPath, epPath := filepath.Join(dir, "mesh.yaml"), filepath.Join(dir, "v2-endpoints.yaml")
	write(t, epPath, endpointsFile(port(t, v2.GRPCAddr)))
	policy := meshPolicy(port(t, v1.GRPCAddr), 50, 50)
	hosted := strings.Replace(policy, "{address: 127.0.0.1, port:", "{address: localhost, port:", 1)
	if hosted == policy {
		t.Fatal("policy template no longer has v1's inline endpoint")
	}
	write(t, meshPath, hosted)
	p := startPlane(t, meshPath)
	client := xdsClient(t, p.addrs.XDS.String(), "dns-client")

	// 1,000 calls: a 50% share has a standard deviation of 1.6 points,
	// so 10 points is over 6 sigma.
	const n, tol = 1000, 10.0
	got := split(t, client, n)
	t.Logf("observed split over %d calls: %v", n, got)
	for _, name := range []string{"fraud-v1", "fraud-v2"} {
		if math.Abs(got[name]-50) > tol {
			t.Errorf("%s got %.1f%% of %d calls, want 50%% ± %.0f (all: %v)", name, got[name], n, tol, got)
		}
	}
	if len(got) != 2 {
		t.Errorf("backends answering = %v, want exactly fraud-v1 and fraud-v2", got)
	}
}
