package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestControlPlaneIdentityFlags: the flags that decide who gets
// certificates fail clearly before anything is served.
func TestControlPlaneIdentityFlags(t *testing.T) {
	example := filepath.Join("..", "..", "examples", "mesh.yaml")
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("# tokens\nabc spiffe://maestro.local/ns/ml/sa/churn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"controlplane", "-f", example, "--xds-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}
	tests := map[string]struct {
		args   []string
		code   int
		stderr string
	}{
		"serve secrets needs insecure": {args: []string{"--insecure-serve-secrets"}, code: 2, stderr: "--insecure-serve-secrets needs --insecure"},
		"missing token file":           {args: []string{"--bootstrap-tokens", filepath.Join(dir, "nope")}, code: 1, stderr: "--bootstrap-tokens"},
		"bad token file":               {args: []string{"--bootstrap-tokens", short}, code: 1, stderr: short + ":2: token shorter than 16 characters"},
		"token review outside a pod":   {args: []string{"--k8s-token-review"}, code: 1, stderr: "--k8s-token-review: tokenreview: not in a Kubernetes pod"},
		"observe percent":              {args: []string{"--observe-percent", "0"}, code: 1, stderr: "--observe-percent 0: want a percent in (0, 100]"},
		"observe address":              {args: []string{"--observe-addr", "nope"}, code: 1, stderr: `--observe-addr "nope": address nope: missing port in address`},
		"observe port":                 {args: []string{"--observe-addr", "cp:0"}, code: 1, stderr: `--observe-addr "cp:0": want a port in 1..65535`},
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append(append([]string{}, base...), tc.args...), &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("exit %d (want %d), stderr lacks %q:\n%s", code, tc.code, tc.stderr, stderr.String())
			}
		})
	}
}
