package controlplane

import (
	"context"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/maestro-ml/maestro/certs/vault/vaulttest"
	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// vaultPolicy is strictPolicy issuing from the test Vault at addr, logging
// in with the token in the environment variable tokenEnv.
func vaultPolicy(t *testing.T, addr, tokenEnv, ttl string) string {
	t.Helper()
	path := strictPolicy(t, ttl)
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	i := strings.Index(s, "  ca:\n")
	j := strings.Index(s, "  certificates:\n")
	if i < 0 || j < i {
		t.Fatal("example has no ca block before certificates")
	}
	ca := "  ca:\n    issuer: vault\n    vault:\n      address: " + addr + "\n      role: mesh\n" +
		"      auth:\n        method: token\n        token:\n          env: " + tokenEnv + "\n"
	write(t, path, s[:i]+ca+s[j:])
	return path
}

// TestVaultOutageNeverPushesExpired: with a 3 s lifetime, Vault down for
// longer than a lifetime must not make the control plane push an expired
// certificate, and renewals resume by themselves once Vault is back.
func TestVaultOutageNeverPushesExpired(t *testing.T) {
	srv, err := vaulttest.New(vaulttest.Config{
		Roles:    map[string]vaulttest.Role{"mesh": {AllowedURISANs: []string{"spiffe://maestro.local/*"}, MaxTTL: time.Hour}},
		Policies: map[string][]string{"pki": {"pki/issue/mesh", "pki/sign/mesh"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	t.Setenv("MAESTRO_E2E_VAULT_TOKEN", srv.NewToken(vaulttest.TokenSpec{Policies: []string{"pki"}}))
	c, addrs := mtlsPlane(t, vaultPolicy(t, srv.Addr(), "MAESTRO_E2E_VAULT_TOKEN", "3s"))

	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()
	stream := mtlsADS(t, ctx, c, addrs.XDS.String(), churnID)
	names := []string{churnID.String(), model.TrustBundleSecret}
	req := &discoveryv3.DiscoveryRequest{Node: node(t, "churn-1", "sidecar", "churn"), TypeUrl: resource.SecretType, ResourceNames: names}
	recv := func() *x509.Certificate {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		chains, bundles := secrets(t, resp)
		leaf := verifyLeaf(t, chains[churnID.String()], bundles[model.TrustBundleSecret], churnID)
		if !now.Before(leaf.NotAfter) {
			t.Fatalf("pushed an expired certificate (expired %v, received %v)", leaf.NotAfter, now)
		}
		req = &discoveryv3.DiscoveryRequest{TypeUrl: resource.SecretType, ResourceNames: names,
			VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		return leaf
	}
	first := recv()
	srv.SetDown(true)
	// Down until the manager has dropped the certificate served before
	// the outage, which it does when it expires unrenewed.
	for snap := range c.Manager().Subscribe(ctx) {
		if _, ok := snap.Certs[churnID]; !ok {
			break
		}
	}
	if ctx.Err() != nil {
		t.Fatal("certificate never expired during the outage")
	}
	backUp := time.Now()
	srv.SetDown(false)
	// Every push is checked by recv; recovery is a certificate issued
	// after Vault came back (NotAfter is whole seconds; Vault backdates
	// NotBefore, so the issue time is NotAfter less the lifetime).
	const ttl = 3 * time.Second
	for {
		leaf := recv()
		if leaf.SerialNumber.Cmp(first.SerialNumber) != 0 && leaf.NotAfter.Add(-ttl).After(backUp.Add(-time.Second)) {
			t.Logf("recovered %v after Vault came back", time.Since(backUp).Round(time.Millisecond))
			return
		}
	}
}

// TestBuiltinCARestartKeepsRoot: a control plane restarted on the same CA
// state directory serves the same root, so running clients keep verifying.
func TestBuiltinCARestartKeepsRoot(t *testing.T) {
	path := strictPolicy(t, "1h")
	pm, err := policy.Load(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	var roots [][]byte
	for range 2 {
		c, err := controlplane.OpenCertificates(pm.Config.Spec, controlplane.CertConfig{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		for s := range c.Manager().Subscribe(ctx) {
			if s.Bundle != nil && len(s.Certs) > 0 {
				roots = append(roots, s.Bundle.Roots[0].Raw)
				break
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if len(roots) != 2 {
		t.Fatalf("got %d roots, want one per start", len(roots))
	}
	if string(roots[0]) != string(roots[1]) {
		t.Fatal("restart made a new root")
	}
	if _, err := os.Stat(pm.Config.Spec.CA.Builtin.StateDir); err != nil {
		t.Fatalf("CA state directory: %v", err)
	}
}

// TestRootRotationKeepsBothRootsInBundle: during a built-in CA root
// rotation the pushed bundle holds the old and the new root, so leaves of
// either verify.
func TestRootRotationKeepsBothRootsInBundle(t *testing.T) {
	c, addrs := mtlsPlane(t, strictPolicy(t, "1h"))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	stream := mtlsADS(t, ctx, c, addrs.XDS.String(), churnID)
	names := []string{churnID.String(), model.TrustBundleSecret}
	req := &discoveryv3.DiscoveryRequest{Node: node(t, "churn-1", "sidecar", "churn"), TypeUrl: resource.SecretType, ResourceNames: names}
	roots := func() int {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		chains, bundles := secrets(t, resp)
		verifyLeaf(t, chains[churnID.String()], bundles[model.TrustBundleSecret], churnID)
		req = &discoveryv3.DiscoveryRequest{TypeUrl: resource.SecretType, ResourceNames: names,
			VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		return strings.Count(string(bundles[model.TrustBundleSecret]), "BEGIN CERTIFICATE")
	}
	if n := roots(); n != 1 {
		t.Fatalf("bundle has %d roots before rotation", n)
	}
	if err := c.Manager().RotateRoot(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		n := roots()
		if n == 2 {
			return
		}
	}
}
