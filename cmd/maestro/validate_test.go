package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vaultExample is the example policy with STRICT mTLS (so sidecars need
// certificates) issuing from Vault at an address where nothing listens.
func vaultExample(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(src), "mode: PERMISSIVE", "mode: STRICT", 1)
	ca := "  ca:\n    issuer: builtin\n    builtin:\n      stateDir: .maestro/ca\n"
	if !strings.Contains(s, ca) {
		t.Fatal("example's ca block changed")
	}
	s = strings.Replace(s, ca, "  ca:\n    issuer: vault\n    vault:\n      address: http://127.0.0.1:1\n      role: mesh\n"+
		"      auth:\n        method: token\n        token:\n          env: MAESTRO_TEST_NO_SUCH_TOKEN\n", 1)
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestValidateGoesThroughTheServersCertificates: validate and validate
// --output open the policy's issuer as the control plane does (a Vault
// policy used to be refused as "not yet supported"), in dry run, so they
// need no reachable Vault and leave no CA state behind.
func TestValidateGoesThroughTheServersCertificates(t *testing.T) {
	vaultPolicy := vaultExample(t)
	badVault := filepath.Join(t.TempDir(), "bad.yaml")
	src, err := os.ReadFile(vaultPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badVault, []byte(strings.Replace(string(src), "role: mesh\n", "role: mesh\n      caCert: /nonexistent/vault-ca.pem\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		"vault policy valid": {args: []string{"validate", "-f", vaultPolicy}, stdout: []string{"policy is valid"}},
		"vault policy output": {args: []string{"validate", "-f", vaultPolicy, "--output", "yaml", "--node", "churn-1", "--role", "sidecar", "--service", "churn"},
			stdout: []string{"# node group sidecar-churn", "[redacted]", "certificateChain", "trustedCa"}},
		"vault address checked": {args: []string{"validate", "-f", badVault}, code: 1, stderr: []string{"vault-ca.pem"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%.2000s", w, stdout.String())
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
				t.Errorf("validate wrote %v (%v) into the working directory", entries, err)
			}
		})
	}
}

// TestValidateBuiltinWritesNoCAState: the built-in CA's dry run keeps its
// root in memory; the policy's stateDir is not created.
func TestValidateBuiltinWritesNoCAState(t *testing.T) {
	example, err := filepath.Abs(filepath.Join("..", "..", "examples", "mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Chdir(dir)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"validate", "-f", example}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, ".maestro")); !os.IsNotExist(err) {
		t.Fatalf("validate created CA state: %v", err)
	}
}
