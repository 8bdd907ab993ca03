package controlplane

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/certfile"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/bootstrap"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/server"
)

// tlsBootstrapPolicy routes xds:///fraud to one inference server; the
// built-in CA keeps its state in dir so a second issuer (what `maestro
// certs issue` opens) signs with the same root.
func tlsBootstrapPolicy(dir string, port uint32) string {
	return fraudPolicy(fmt.Sprintf("  ca: {issuer: builtin, builtin: {stateDir: %s}}\n", filepath.Join(dir, "ca")), port, "",
		"    - {version: v1, weight: 100}\n")
}

// issueFiles issues id from the policy's CA into dir as `maestro certs
// issue` does: cert.pem, key.pem, ca.pem.
func issueFiles(t *testing.T, spec policy.MeshSpec, id spiffe.ID, dir string) {
	t.Helper()
	opts, err := controlplane.SetupOptions(spec)
	if err != nil {
		t.Fatal(err)
	}
	issuer, _, err := opts.NewIssuer(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, err := issuer.Issue(ctx, certs.Request{ID: id, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := certfile.Write(dir, c); err != nil {
		t.Fatal(err)
	}
}

// spiffeEnv turns on gRPC-Go's SPIFFE bundle map verification.
const spiffeEnv = "GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE"

// rerunWith runs the test again in a process with env=true, since gRPC
// reads such variables once at start, and reports whether this process
// was the parent, whose part is then done.
func rerunWith(t *testing.T, env string) bool {
	t.Helper()
	if os.Getenv(env) == "true" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), env+"=true")
	out, err := cmd.CombinedOutput()
	t.Logf("in a process with %s=true:\n%s", env, out)
	if err != nil {
		t.Fatalf("re-run: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatal("re-run did not pass the test")
	}
	return true
}

// TestGRPCBootstrapReachesMTLSControlPlane: a proxyless client whose
// bootstrap comes from the bootstrap package with its identity's files
// gets its listener over the mTLS xDS channel and calls the inference
// server; the same client with a plaintext bootstrap is refused.
func TestGRPCBootstrapReachesMTLSControlPlane(t *testing.T) {
	if rerunWith(t, spiffeEnv) {
		return
	}
	reachMTLSPlane(t, true)
}

// TestGRPCBootstrapTLSVerifiesTheXDSAddress: the control plane's
// certificate names the address clients dial, so gRPC's standard "tls"
// channel credentials, which check the host name, accept it without the
// experimental SPIFFE verification.
func TestGRPCBootstrapTLSVerifiesTheXDSAddress(t *testing.T) {
	if os.Getenv(spiffeEnv) == "true" {
		t.Skip("covered without the SPIFFE variable by the parent process")
	}
	reachMTLSPlane(t, false)
}

// reachMTLSPlane runs a proxyless client with and without a TLS bootstrap
// against an mTLS control plane; withBundleMap adds the SPIFFE bundle map.
func reachMTLSPlane(t *testing.T, withBundleMap bool) {
	dir := t.TempDir()
	backend := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1"})
	path := filepath.Join(dir, "mesh.yaml")
	write(t, path, tlsBootstrapPolicy(dir, port(t, backend.GRPCAddr)))
	c, addrs := mtlsPlane(t, path)

	pm, err := policy.Load(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	spec := pm.Config.Spec
	idDir := filepath.Join(dir, "client-identity")
	issueFiles(t, spec, spiffe.Must(spec.TrustDomain, "apps", "scorer"), idDir)
	withTLS := &bootstrap.TLS{
		CertFile: filepath.Join(idDir, "cert.pem"), KeyFile: filepath.Join(idDir, "key.pem"), CAFile: filepath.Join(idDir, "ca.pem"),
		ServerID: c.Self(), SPIFFEBundleMapFile: filepath.Join(idDir, "bundle-map.json"),
	}
	ca, err := os.ReadFile(withTLS.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	bundleMap, err := bootstrap.SPIFFEBundleMap(c.Self(), ca)
	if err != nil {
		t.Fatal(err)
	}
	write(t, withTLS.SPIFFEBundleMapFile, string(bundleMap))
	if !withBundleMap {
		withTLS.SPIFFEBundleMapFile = ""
	}

	tests := []struct {
		name string
		tls  *bootstrap.TLS
		ok   bool
	}{
		{"mTLS identity from the same CA", withTLS, true},
		{"plaintext bootstrap", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := bootstrap.GRPC(bootstrap.Config{NodeID: "scorer-1", Role: model.RoleProxyless, XDSAddr: addrs.XDS.String(), TLS: tc.tls})
			if err != nil {
				t.Fatal(err)
			}
			callThroughBootstrap(t, cfg, tc.ok, backend.Name)
		})
	}
}

// callThroughBootstrap calls ServerLive through a proxyless client whose
// xDS bootstrap is cfg and fails the test unless ok says rightly whether
// the control plane configures it, and backend answers it. A refused
// client never gets a listener; a short bound on that case keeps the
// test fast, while an accepted one gets the full limit.
func callThroughBootstrap(t *testing.T, cfg []byte, ok bool, backend string) {
	t.Helper()
	resolver, err := xds.NewXDSResolverWithConfigForTesting(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///fraud", grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	limit := waitLimit
	if !ok {
		limit = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var hdr metadata.MD
	err = liveThroughXDS(ctx, pb.NewGRPCInferenceServiceClient(conn), &hdr)
	switch got := hdr.Get(server.ServerHeader); {
	case ok && err != nil:
		t.Fatalf("call through the control plane: %v", err)
	case ok && (len(got) != 1 || got[0] != backend):
		t.Fatalf("answered by %v, want %s", got, backend)
	case !ok && err == nil:
		t.Fatal("a client the control plane should refuse got its configuration")
	}
	t.Logf("result: %v", err)
}

// liveThroughXDS calls ServerLive through an xds:/// channel. A pick can
// fail with "unknown cluster selected for RPC" while gRPC's cluster manager
// is still creating a route's cluster from a new configuration (seen once
// on a loaded machine); that status ends a wait-for-ready call, so such a
// call is repeated until the deadline. Any other result is returned as is.
func liveThroughXDS(ctx context.Context, c pb.GRPCInferenceServiceClient, hdr *metadata.MD) error {
	for {
		_, err := c.ServerLive(ctx, &pb.ServerLiveRequest{}, grpc.WaitForReady(true), grpc.Header(hdr))
		if err == nil || status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "unknown cluster selected for RPC") || ctx.Err() != nil {
			return err
		}
	}
}
