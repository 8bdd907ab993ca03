package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestControlPlaneCommands runs validate, bootstrap and controlplane as
// the binary would, checking exit codes and what they print.
func TestControlPlaneCommands(t *testing.T) {
	example := filepath.Join("..", "..", "examples", "mesh.yaml")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata:\n  name: r\nspec:\n  bogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("3f9c1e0d7a5b4c2e8f6a1b0c9d8e7f6a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		args       []string
		code       int
		stdout     []string
		stderr     []string
		jsonStdout bool
	}{
		"validate ok":          {args: []string{"validate", "-f", example}, stdout: []string{"policy is valid"}},
		"validate errors":      {args: []string{"validate", "-f", bad}, code: 1, stderr: []string{bad + ":6:3: Route \"r\": spec.bogus: unknown field", "2 problems found"}},
		"validate output json": {args: []string{"validate", "-f", example, "--output", "json", "--node", "gw-1", "--role", "gateway"}, stdout: []string{`"listener"`, `"route"`, `"cluster"`}, jsonStdout: true},
		"validate output yaml": {args: []string{"validate", "-f", example, "--output", "yaml", "--node", "c", "--role", "proxyless"}, stdout: []string{"# node group proxyless", "apiListener"}},
		"validate unknown node": {args: []string{"validate", "-f", example, "--output", "json", "--node", "nobody"}, code: 1,
			stderr: []string{"no node group matches the node"}},
		"validate bad output":  {args: []string{"validate", "-f", example, "--output", "xml"}, code: 2, stderr: []string{`--output "xml"`}},
		"validate no path":     {args: []string{"validate"}, code: 2, stderr: []string{"-f PATH"}},
		"validate help":        {args: []string{"validate", "--help"}, stderr: []string{"Usage: maestro validate"}},
		"bootstrap envoy":      {args: []string{"bootstrap", "--node", "gw-1", "--role", "gateway"}, stdout: []string{"maestro.role: gateway", "cluster_name: maestro-xds"}},
		"bootstrap envoy json": {args: []string{"bootstrap", "--node", "s", "--role", "sidecar", "--service", "fraud", "--output", "json"}, stdout: []string{`"maestro.service": "fraud"`}, jsonStdout: true},
		"bootstrap grpc":       {args: []string{"bootstrap", "--grpc", "--node", "c", "--xds-addr", "10.0.0.1:18000"}, stdout: []string{`"server_uri": "10.0.0.1:18000"`, `"maestro.role": "proxyless"`}, jsonStdout: true},
		"bootstrap bad":        {args: []string{"bootstrap", "--node", "x", "--role", "sidecar"}, code: 1, stderr: []string{"a sidecar needs the service"}},
		"bootstrap envoy token": {args: []string{"bootstrap", "--node", "gw-1", "--role", "gateway", "--token-file", token},
			stdout: []string{"key: authorization", "value: Bearer 3f9c1e0d7a5b4c2e8f6a1b0c9d8e7f6a\n"}},
		"bootstrap grpc token": {args: []string{"bootstrap", "--grpc", "--node", "c", "--token-file", token, "--tls-ca", token},
			stdout: []string{`"jwt_token_file": "` + token + `"`, `"type": "tls"`}, jsonStdout: true},
		"bootstrap grpc token plaintext": {args: []string{"bootstrap", "--grpc", "--node", "c", "--token-file", token}, code: 1,
			stderr: []string{"only over TLS"}},
		"bootstrap missing token": {args: []string{"bootstrap", "--node", "gw-1", "--role", "gateway", "--token-file", token + ".missing"}, code: 1,
			stderr: []string{"--token-file"}},
		"bootstrap help": {args: []string{"bootstrap", "--help"}, stderr: []string{"Usage: maestro bootstrap"}},
		"controlplane bad audit log": {args: []string{"controlplane", "-f", example, "--audit-log", filepath.Join(t.TempDir(), "missing", "audit.jsonl")}, code: 1,
			stderr: []string{"--audit-log"}},
		"controlplane bad policy": {args: []string{"controlplane", "--insecure", "-f", bad, "--xds-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, code: 1,
			stderr: []string{"initial load", "spec.bogus"}},
		"controlplane help": {args: []string{"controlplane", "--help"}, stderr: []string{"Usage: maestro controlplane"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			if tc.jsonStdout && !json.Valid(stdout.Bytes()) {
				t.Errorf("stdout is not JSON:\n%s", stdout.String())
			}
		})
	}
}
