package controlplane

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane"
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
	srv, path := faultyVault(t, false)
	c, addrs := mtlsPlane(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()
	w := watchChurnSecrets(t, ctx, c, addrs.XDS.String())
	first, _ := w.next()
	srv.SetDown(true)
	waitExpired(t, ctx, c)
	backUp := time.Now()
	srv.SetDown(false)
	w.waitRenewed(first, backUp, 3*time.Second)
	t.Logf("recovered %v after Vault came back", time.Since(backUp).Round(time.Millisecond))
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
	w := watchChurnSecrets(t, ctx, c, addrs.XDS.String())
	roots := func() int {
		_, bundle := w.next()
		return strings.Count(string(bundle), "BEGIN CERTIFICATE")
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
