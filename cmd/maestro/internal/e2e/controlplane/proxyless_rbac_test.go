package controlplane

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/maestro-ml/maestro/certs/mtls"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/bootstrap"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/xds"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

type liveServer struct {
	pb.UnimplementedGRPCInferenceServiceServer
}

func (liveServer) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

// TestProxylessRBAC: an xDS-enabled gRPC server gets its listener, TLS and
// RBAC from the control plane, with its certificate from the same issuer;
// the authorized identity's call succeeds, another identity's is denied.
func TestProxylessRBAC(t *testing.T) {
	dir := t.TempDir()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(lis.Addr().(*net.TCPAddr).Port)
	src, err := os.ReadFile(filepath.Join(repoRoot, "examples", "policies", "proxyless-mtls.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(src), "inbound: {address: 0.0.0.0, port: 9001}", "inbound: {address: 127.0.0.1, port: "+port+"}", 1)
	s = strings.Replace(s, "spec:\n  mtls: {mode: STRICT}", "spec:\n  mtls: {mode: STRICT}\n  ca: {issuer: builtin, builtin: {stateDir: "+filepath.Join(dir, "ca")+"}}", 1)
	path := filepath.Join(dir, "mesh.yaml")
	write(t, path, s)

	ctx, cancel := context.WithCancel(context.Background())
	pm, err := policy.Load(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	reg := telemetry.NewRegistry()
	c, err := controlplane.OpenCertificates(pm.Config.Spec, controlplane.CertConfig{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan controlplane.Addrs, 1)
	done := make(chan error, 2)
	go func() { done <- c.Run(ctx) }()
	// gRPC's xDS client reaches the control plane in plaintext here: its
	// certificates come from the file_watcher provider below, not SDS.
	go func() {
		done <- controlplane.Run(ctx, controlplane.Config{Paths: []string{path}, Load: c.Loader(), Certs: c, Insecure: true,
			XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Registry: reg, Ready: func(a controlplane.Addrs) { ready <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("control plane: %v", err)
			}
		}
	})
	var addrs controlplane.Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("control plane ended: %v", err)
	case <-time.After(waitLimit):
		t.Fatal("control plane not ready")
	}

	td := pm.Config.Spec.TrustDomain
	fraud, scorer := spiffe.Must(td, "ml", "fraud"), spiffe.Must(td, "apps", "scorer")
	cert, ok := c.Manager().Certificate(fraud)
	if !ok {
		t.Fatal("no certificate for fraud")
	}
	files := map[string][]byte{"cert.pem": cert.ChainPEM(), "key.pem": cert.KeyPEM(), "ca.pem": c.Manager().Bundle().PEM()}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	boot, err := bootstrap.GRPC(bootstrap.Config{NodeID: "fraud-1", Role: model.RoleProxyless, Service: "fraud", XDSAddr: addrs.XDS.String()})
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(boot, &doc); err != nil {
		t.Fatal(err)
	}
	doc["certificate_providers"] = map[string]any{xds.GRPCCertProvider: map[string]any{"plugin_name": "file_watcher", "config": map[string]any{
		"certificate_file": filepath.Join(dir, "cert.pem"), "private_key_file": filepath.Join(dir, "key.pem"),
		"ca_certificate_file": filepath.Join(dir, "ca.pem"), "refresh_interval": "1s"}}}
	doc["server_listener_resource_name_template"] = "grpc/server?xds.resource.listening_address=%s"
	boot, err = json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	serving := make(chan grpcxds.ServingModeChangeArgs, 10)
	srv, err := grpcxds.NewGRPCServer(grpc.Creds(creds), grpcxds.BootstrapContentsForTesting(boot),
		grpcxds.ServingModeCallback(func(_ net.Addr, a grpcxds.ServingModeChangeArgs) { serving <- a }))
	if err != nil {
		t.Fatal(err)
	}
	pb.RegisterGRPCInferenceServiceServer(srv, liveServer{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	deadline := time.After(waitLimit)
	for serve := false; !serve; {
		select {
		case a := <-serving:
			serve = a.Mode == connectivity.ServingModeServing
			if a.Err != nil {
				t.Logf("serving mode: %v", a.Err)
			}
		case <-deadline:
			t.Fatal("xDS server never started serving")
		}
	}

	call := func(id spiffe.ID) error {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(mtls.ClientConfig(c.Manager(), id, spiffe.AllowIDs(fraud)))))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cctx, ccancel := context.WithTimeout(context.Background(), waitLimit)
		defer ccancel()
		_, err = pb.NewGRPCInferenceServiceClient(conn).ServerLive(cctx, &pb.ServerLiveRequest{})
		return err
	}
	for _, tc := range []struct {
		name string
		id   spiffe.ID
		want codes.Code
	}{
		{"authorized scorer", scorer, codes.OK},
		{"fraud is not a caller", fraud, codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := status.Code(call(tc.id)); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
