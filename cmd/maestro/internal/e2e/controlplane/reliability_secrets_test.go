package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/certs/secretauth"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/certs/tokenreview"
	"github.com/maestro-ml/maestro/certs/tokenreview/tokenreviewtest"
	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/internal/e2etest"
)

const (
	churnToken = "churn-bootstrap-token-0123456789"
	// Tokens the fake Kubernetes API server knows: a pod of the churn
	// service account, and a person.
	churnSAToken = "eyJhbGciOiJSUzI1NiJ9.churn-pod"
	userToken    = "eyJhbGciOiJSUzI1NiJ9.alice"
)

// TestReliabilitySecretsNeedAnIdentity: with sidecars under STRICT mTLS,
// a client that cannot prove an identity must not get any workload's
// private key. Over plaintext (--insecure) it still gets configuration
// but no certificate unless --insecure-serve-secrets; a bootstrap token
// gets the certificates of the identities it names and no other, and a
// Kubernetes service-account token (checked by TokenReview) those of its
// account, over plaintext and over the mTLS port without a client
// certificate; a bad token is refused, never downgraded to anonymous.
func TestReliabilitySecretsNeedAnIdentity(t *testing.T) {
	other := spiffe.Must("maestro.local", "ml", "fraud")
	tests := []struct {
		name          string
		mtls          bool
		serveSecrets  bool
		token         string
		secret        spiffe.ID
		wantCode      codes.Code // codes.OK: the certificate is served
		wantConfigErr bool
	}{
		{name: "plaintext anonymous", secret: churnID, wantCode: codes.PermissionDenied},
		{name: "plaintext anonymous, secrets allowed", serveSecrets: true, secret: churnID},
		{name: "plaintext token", token: churnToken, secret: churnID},
		{name: "plaintext token, other identity", token: churnToken, secret: other, wantCode: codes.PermissionDenied},
		{name: "plaintext unknown token", token: "not-a-known-token-at-all", secret: churnID, wantCode: codes.Unauthenticated, wantConfigErr: true},
		{name: "plaintext k8s service-account token", token: churnSAToken, secret: churnID},
		{name: "mtls k8s service-account token", mtls: true, token: churnSAToken, secret: churnID},
		{name: "mtls k8s token, other identity", mtls: true, token: churnSAToken, secret: other, wantCode: codes.PermissionDenied},
		{name: "mtls k8s token of a user", mtls: true, token: userToken, secret: churnID, wantCode: codes.Unauthenticated, wantConfigErr: true},
		{name: "mtls token without certificate", mtls: true, token: churnToken, secret: churnID},
		{name: "mtls token, other identity", mtls: true, token: churnToken, secret: other, wantCode: codes.PermissionDenied},
		{name: "mtls anonymous", mtls: true, secret: churnID, wantCode: codes.Unauthenticated, wantConfigErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := tokenPlane(t, strictPolicy(t, "1h"), tc.mtls, tc.serveSecrets)
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			if tc.token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, secretauth.TokenHeader, "Bearer "+tc.token)
			}
			creds := insecure.NewCredentials()
			if tc.mtls {
				// The node has no certificate yet; it checks the control
				// plane's against nothing it holds, so only the token
				// authenticates it (in production it trusts a CA bundle).
				creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
			}
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			ask := func(typ string, names []string) (*discoveryv3.DiscoveryResponse, error) {
				stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
				if err != nil {
					return nil, err
				}
				// A stream the server already ended fails Send with EOF;
				// its status comes from Recv.
				if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node(t, "churn-1", "sidecar", "churn"), TypeUrl: typ, ResourceNames: names}); err != nil && !errors.Is(err, io.EOF) {
					return nil, err
				}
				return stream.Recv()
			}
			// Configuration needs no secret.
			if _, err := ask(resource.ListenerType, nil); (err != nil) != tc.wantConfigErr {
				t.Fatalf("listeners: err = %v, want error %v", err, tc.wantConfigErr)
			}
			resp, err := ask(resource.SecretType, []string{tc.secret.String(), model.TrustBundleSecret})
			if tc.wantCode != codes.OK {
				if status.Code(err) != tc.wantCode {
					t.Fatalf("secret %s: err = %v, want %s", tc.secret, err, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			chains, bundles := secrets(t, resp)
			verifyLeaf(t, chains[tc.secret.String()], bundles[model.TrustBundleSecret], tc.secret)
		})
	}
}

// fakeKubernetes is a TokenReview client of a fake API server that knows
// churnSAToken (service account ml/churn) and userToken.
func fakeKubernetes(t *testing.T) *tokenreview.Reviewer {
	t.Helper()
	const self = "controlplane-pod-token"
	api := tokenreviewtest.New(tokenreviewtest.Config{Caller: self, Tokens: map[string]tokenreviewtest.Token{
		churnSAToken: {User: "system:serviceaccount:ml:churn"},
		userToken:    {User: "alice@example.com"},
	}})
	t.Cleanup(api.Close)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "ca.crt"), string(api.CAPEM()))
	write(t, filepath.Join(dir, "token"), self)
	r, err := tokenreview.New(tokenreview.Config{Host: api.URL(), CAFile: filepath.Join(dir, "ca.crt"), TokenFile: filepath.Join(dir, "token")})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tokenPlane runs the control plane as `maestro controlplane
// --bootstrap-tokens` does (plaintext with --insecure unless mtls) and
// returns its xDS address.
func tokenPlane(t *testing.T, path string, mtls, serveSecrets bool) (*controlplane.Certificates, string) {
	t.Helper()
	return tokenPlaneWith(t, path, mtls, serveSecrets, map[string][]spiffe.ID{churnToken: {churnID}})
}

// tokenPlaneWith is tokenPlane accepting the bootstrap tokens given.
func tokenPlaneWith(t *testing.T, path string, mtls, serveSecrets bool, tokens map[string][]spiffe.ID) (*controlplane.Certificates, string) {
	t.Helper()
	p := e2etest.Start(t, e2etest.Config{Path: path, Limit: waitLimit,
		Certs: controlplane.CertConfig{XDSNames: controlplane.XDSNames("127.0.0.1:0", nil), Plaintext: !mtls,
			BootstrapTokens: tokens, TokenReviewer: fakeKubernetes(t),
			MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Wait: 2 * time.Second},
		Server: func(pc *controlplane.Config, c *controlplane.Certificates) {
			pc.Insecure, pc.InsecureSecrets = !mtls, serveSecrets
			if mtls {
				pc.GRPCOptions = []grpc.ServerOption{grpc.Creds(credentials.NewTLS(c.ServerTLS()))}
			}
		},
	})
	return p.Certs, p.Addrs.XDS.String()
}

// TestReliabilityNoExpiredCertificateToNewStreams: while Vault is down past
// a certificate's 3 s lifetime, the last good configuration still holds the
// expired certificate; a stream asking for it anew (a node with a token)
// must be refused rather than handed the expired key, and served a fresh
// one once Vault is back.
func TestReliabilityNoExpiredCertificateToNewStreams(t *testing.T) {
	srv, path := faultyVault(t, false)
	c, addr := tokenPlane(t, path, false, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, secretauth.TokenHeader, "Bearer "+churnToken)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	// ask opens a new stream, as a restarted node does, and returns the
	// certificate it is served.
	ask := func() (*x509.Certificate, error) {
		stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			return nil, err
		}
		req := &discoveryv3.DiscoveryRequest{Node: node(t, "churn-1", "sidecar", "churn"), TypeUrl: resource.SecretType,
			ResourceNames: []string{churnID.String(), model.TrustBundleSecret}}
		if err := stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		chains, bundles := secrets(t, resp)
		// Expiry first, so that an expired certificate is named as such.
		b, _ := pem.Decode(chains[churnID.String()])
		if b == nil {
			t.Fatal("no certificate served")
		}
		leaf, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if now := time.Now(); !now.Before(leaf.NotAfter) {
			t.Fatalf("a new stream was served a certificate expired at %v (now %v)", leaf.NotAfter, now)
		}
		return verifyLeaf(t, chains[churnID.String()], bundles[model.TrustBundleSecret], churnID), nil
	}
	first, err := ask()
	if err != nil {
		t.Fatal(err)
	}
	srv.SetDown(true)
	for snap := range c.Manager().Subscribe(ctx) {
		if _, ok := snap.Certs[churnID]; !ok {
			break
		}
	}
	if ctx.Err() != nil {
		t.Fatal("certificate never expired during the outage")
	}
	if _, err := ask(); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("new stream during the outage: err = %v, want PERMISSION_DENIED naming the expiry", err)
	}
	srv.SetDown(false)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		leaf, err := ask()
		if err == nil && leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("no fresh certificate after Vault came back: %v", err)
		}
	}
}
