package controlplane

import (
	"context"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds"

	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/bootstrap"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/server"
	"github.com/maestro-ml/maestro/internal/cptest"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

const (
	waitLimit = 20 * time.Second
	// rpcs is the sample size of one measured split; with 5,000 calls a
	// 10% share has a standard deviation of 0.42 points, so the 3-point
	// tolerance is over 7 sigma.
	rpcs      = 5000
	tolerance = 3.0
	// probeBatch and maxProbes bound the wait for a change to show in
	// the traffic.
	probeBatch = 200
	maxProbes  = 100
)

type plane struct {
	addrs   controlplane.Addrs
	reloads chan error
}

// startPlane runs a control plane serving the policy at path, through the
// same loader as `maestro controlplane`.
func startPlane(t testing.TB, path string) *plane {
	t.Helper()
	p := &plane{reloads: make(chan error, 10)}
	ready := make(chan controlplane.Addrs, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- controlplane.WithCertificates(ctx, []string{path}, controlplane.CertConfig{DryRun: true, Plaintext: true},
			func(ctx context.Context, c *controlplane.Certificates) error {
				return controlplane.Run(ctx, controlplane.Config{
					// Plaintext serving every secret, as `maestro up` does:
					// these tests are about the resources, not who gets them.
					Paths: []string{path}, Load: c.Loader(), Certs: c, Insecure: true, InsecureSecrets: true,
					XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Registry: telemetry.NewRegistry(),
					Ready:    func(a controlplane.Addrs) { ready <- a },
					OnReload: func(_ string, err error) { p.reloads <- err },
				})
			})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	select {
	case p.addrs = <-ready:
	case err := <-done:
		t.Fatalf("control plane ended: %v", err)
	case <-time.After(waitLimit):
		t.Fatal("control plane not ready")
	}
	return p
}

// edit writes content to path and waits for the control plane to have
// reloaded, returning the reload's error.
func (p *plane) edit(t *testing.T, path, content string) error {
	t.Helper()
	write(t, path, content)
	select {
	case err := <-p.reloads:
		return err
	case <-time.After(waitLimit):
		t.Fatal("no reload after edit")
	}
	return nil
}

// write replaces path's content atomically, so that a running control
// plane reloads the whole new content once, never a truncated file.
func write(t testing.TB, path, content string) {
	t.Helper()
	if err := cptest.ReplaceFile(path, []byte(content)); err != nil {
		t.Fatal(err)
	}
}

// meshPolicy is a policy splitting the gRPC service fraud between v1
// (inline endpoint) and v2 (endpoints file), for proxyless clients of
// xds:///fraud.
func meshPolicy(v1Port, w1, w2 uint32) string {
	return fraudPolicy("", v1Port, "    - name: v2\n      endpointsFile: v2-endpoints.yaml\n",
		fmt.Sprintf("    - {version: v1, weight: %d}\n    - {version: v2, weight: %d}\n", w1, w2))
}

// fraudPolicy is a plaintext policy (mesh e2e, its spec ending with
// meshSpec) of the gRPC service fraud, version v1 at v1Port on loopback
// then the versions in more, and route fraud split as split says; more
// and split are YAML list items, indented as their lists.
func fraudPolicy(meshSpec string, v1Port uint32, more, split string) string {
	return fmt.Sprintf(`apiVersion: maestro.dev/v1alpha1
kind: Mesh
metadata:
  name: e2e
spec:
  mtls:
    mode: DISABLE
%s---
apiVersion: maestro.dev/v1alpha1
kind: Service
metadata:
  name: fraud
  namespace: ml
spec:
  protocol: grpc
  versions:
    - name: v1
      endpoints: [{address: 127.0.0.1, port: %d}]
%s---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata:
  name: fraud
  namespace: ml
spec:
  service: fraud
  split:
%s`, meshSpec, v1Port, more, split)
}

func endpointsFile(port uint32) string {
	return fmt.Sprintf("apiVersion: maestro.dev/v1alpha1\nkind: Endpoints\nendpoints:\n  - {address: 127.0.0.1, port: %d}\n", port)
}

// xdsClient dials xds:///target as proxyless node id, with a bootstrap
// from the bootstrap package.
func xdsClient(t *testing.T, xdsAddr, id string) pb.GRPCInferenceServiceClient {
	t.Helper()
	cfg, err := bootstrap.GRPC(bootstrap.Config{NodeID: id, Role: model.RoleProxyless, XDSAddr: xdsAddr})
	if err != nil {
		t.Fatal(err)
	}
	resolver, err := xds.NewXDSResolverWithConfigForTesting(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///fraud", grpc.WithResolvers(resolver),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pb.NewGRPCInferenceServiceClient(conn)
}

// split makes n calls and returns the share (percent) answered by each
// server name.
func split(t *testing.T, c pb.GRPCInferenceServiceClient, n int) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	counts := map[string]int{}
	for range n {
		var hdr metadata.MD
		if err := liveThroughXDS(ctx, c, &hdr); err != nil {
			t.Fatalf("call through xds: %v", err)
		}
		name := hdr.Get(server.ServerHeader)
		if len(name) != 1 {
			t.Fatalf("answer without %s header: %v", server.ServerHeader, hdr)
		}
		counts[name[0]]++
	}
	shares := map[string]float64{}
	for k, v := range counts {
		shares[k] = 100 * float64(v) / float64(n)
	}
	return shares
}

func checkSplit(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	t.Logf("observed split over %d calls: %v (policy %v)", rpcs, got, want)
	for name, w := range want {
		if math.Abs(got[name]-w) > tolerance {
			t.Errorf("%s got %.2f%% of %d calls, want %.0f%% ± %.0f (all: %v)", name, got[name], rpcs, w, tolerance, got)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected backend %s answered %.2f%%", name, got[name])
		}
	}
}

// waitShare probes until backend's share exceeds min, so a test waits on
// the observed behaviour rather than on time.
func waitShare(t *testing.T, c pb.GRPCInferenceServiceClient, backend string, min float64) {
	t.Helper()
	for range maxProbes {
		if split(t, c, probeBatch)[backend] > min {
			return
		}
	}
	t.Fatalf("%s never got over %.0f%% of traffic in %d probes", backend, min, maxProbes)
}

func TestProxylessSplitFollowsPolicyEdits(t *testing.T) {
	v1 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1"})
	v2 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v2"})
	v2b := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v2-new"})
	dir := t.TempDir()
	meshPath, epPath := filepath.Join(dir, "mesh.yaml"), filepath.Join(dir, "v2-endpoints.yaml")
	write(t, epPath, endpointsFile(port(t, v2.GRPCAddr)))
	write(t, meshPath, meshPolicy(port(t, v1.GRPCAddr), 90, 10))
	p := startPlane(t, meshPath)
	client := xdsClient(t, p.addrs.XDS.String(), "client-1")

	checkSplit(t, split(t, client, rpcs), map[string]float64{"fraud-v1": 90, "fraud-v2": 10})

	// Editing the policy shifts the split of the running client.
	if err := p.edit(t, meshPath, meshPolicy(port(t, v1.GRPCAddr), 50, 50)); err != nil {
		t.Fatalf("valid edit rejected: %v", err)
	}
	waitShare(t, client, "fraud-v2", 35)
	checkSplit(t, split(t, client, rpcs), map[string]float64{"fraud-v1": 50, "fraud-v2": 50})

	// A broken edit changes nothing.
	if err := p.edit(t, meshPath, strings.Replace(meshPolicy(port(t, v1.GRPCAddr), 10, 90), "weight: 90", "weight: ninety", 1)); err == nil {
		t.Fatal("broken edit was applied")
	}
	checkSplit(t, split(t, client, rpcs), map[string]float64{"fraud-v1": 50, "fraud-v2": 50})

	// The endpoints file is watched too: moving v2 to a new instance
	// moves its share there.
	if err := p.edit(t, meshPath, meshPolicy(port(t, v1.GRPCAddr), 50, 50)); err != nil {
		t.Fatalf("restoring the policy: %v", err)
	}
	if err := p.edit(t, epPath, endpointsFile(port(t, v2b.GRPCAddr))); err != nil {
		t.Fatalf("endpoints edit rejected: %v", err)
	}
	waitShare(t, client, "fraud-v2-new", 35)
	checkSplit(t, split(t, client, rpcs), map[string]float64{"fraud-v1": 50, "fraud-v2-new": 50})
}

func port(t *testing.T, addr string) uint32 {
	t.Helper()
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return uint32(p)
}
