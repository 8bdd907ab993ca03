package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/jwt"

	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/controlplane/bootstrap"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/inference/inferencetest"
)

// callCredsEnv turns on gRPC-Go's bootstrap call credentials (gRFC A97).
const callCredsEnv = "GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS"

// jwtShapedToken is a bootstrap token gRPC-Go's jwt_token_file call
// credentials accept: they parse the file as a JWT for its "exp" claim
// (the control plane compares the token as an opaque string).
func jwtShapedToken(t *testing.T, dir string) (token, file string) {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	token = enc([]byte(`{"alg":"none"}`)) + "." + enc(fmt.Appendf(nil, `{"exp":%d,"sub":%q}`, time.Now().Add(time.Hour).Unix(), dir)) + ".c2ln"
	file = filepath.Join(dir, "token")
	write(t, file, token+"\n")
	return token, file
}

// TestGRPCBootstrapTokenGetsConfigurationAndSecrets: a proxyless gRPC-Go
// client holding no certificate, only the control plane's CA and a token
// file, reaches a control plane run with bootstrap tokens over TLS using
// the bootstrap `maestro bootstrap --grpc --token-file` prints: it gets its
// configuration and calls the inference server, while a client with a
// token the control plane does not know is refused; and gRPC-Go's own jwt_token_file
// credentials on that file fetch the token identity's certificate.
func TestGRPCBootstrapTokenGetsConfigurationAndSecrets(t *testing.T) {
	if rerunWith(t, callCredsEnv) {
		return
	}
	t.Run("configuration", func(t *testing.T) {
		dir := t.TempDir()
		backend := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1"})
		path := filepath.Join(dir, "mesh.yaml")
		write(t, path, tlsBootstrapPolicy(dir, port(t, backend.GRPCAddr)))
		caFile, self := caOf(t, path, dir)
		token, tokenFile := jwtShapedToken(t, dir)
		_, addr := tokenPlaneWith(t, path, true, false, map[string][]spiffe.ID{token: {spiffe.Must(self.TrustDomain, "apps", "scorer")}})
		_, unknownFile := jwtShapedToken(t, t.TempDir())
		for _, tc := range []struct {
			name      string
			tokenFile string
			ok        bool
		}{{"with token", tokenFile, true}, {"unknown token", unknownFile, false}} {
			t.Run(tc.name, func(t *testing.T) {
				cfg, err := bootstrap.GRPC(bootstrap.Config{NodeID: "scorer-1", Role: model.RoleProxyless, XDSAddr: addr,
					TokenFile: tc.tokenFile, TLS: &bootstrap.TLS{CAFile: caFile, ServerID: self}})
				if err != nil {
					t.Fatal(err)
				}
				callThroughBootstrap(t, cfg, tc.ok, backend.Name)
			})
		}
	})
	t.Run("secrets", func(t *testing.T) {
		dir := t.TempDir()
		path := strictPolicy(t, "1h")
		caFile, _ := caOf(t, path, dir)
		token, tokenFile := jwtShapedToken(t, dir)
		_, addr := tokenPlaneWith(t, path, true, false, map[string][]spiffe.ID{token: {churnID}})
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(caFile)
		if err != nil || !pool.AppendCertsFromPEM(ca) {
			t.Fatalf("read %s: %v", caFile, err)
		}
		creds, err := jwt.NewTokenFileCallCredentials(tokenFile)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})),
			grpc.WithPerRPCCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node(t, "churn-1", "sidecar", "churn"), TypeUrl: resource.SecretType,
			ResourceNames: []string{churnID.String(), model.TrustBundleSecret}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("secrets with the token file's call credentials: %v", err)
		}
		chains, bundles := secrets(t, resp)
		verifyLeaf(t, chains[churnID.String()], bundles[model.TrustBundleSecret], churnID)
	})
}

// caOf writes the policy's CA roots to dir/ca.pem, as a node is given
// them, and returns the file and the control plane's identity.
func caOf(t *testing.T, path, dir string) (string, spiffe.ID) {
	t.Helper()
	pm, err := policy.Load(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	spec := pm.Config.Spec
	idDir := filepath.Join(dir, "ca-only")
	issueFiles(t, spec, spiffe.Must(spec.TrustDomain, "apps", "ca-reader"), idDir)
	for _, f := range []string{"cert.pem", "key.pem"} {
		if err := os.Remove(filepath.Join(idDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(idDir, "ca.pem"), spiffe.Must(spec.TrustDomain, "maestro-system", "controlplane")
}
