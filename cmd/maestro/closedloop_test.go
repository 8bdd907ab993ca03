package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestControlPlaneLoopFlags(t *testing.T) {
	example := filepath.Join("..", "..", "examples", "mesh.yaml")
	base := []string{"controlplane", "--insecure", "-f", example, "--xds-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}
	for name, tc := range map[string]struct {
		args   []string
		stderr string
	}{
		"both sources":  {[]string{"--prometheus", "http://127.0.0.1:9090", "--metrics-target", "http://127.0.0.1:1/metrics"}, "--prometheus and --metrics-target exclude each other"},
		"bad target":    {[]string{"--metrics-target", "127.0.0.1:1/metrics"}, `--metrics-target "127.0.0.1:1/metrics": want an http or https URL`},
		"bad signals":   {[]string{"--signals", "cpu"}, `--signals: signals "cpu": want envoy or inference`},
		"bad state dir": {[]string{"--state-dir", filepath.Join(example, "sub")}, "--state-dir"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append(append([]string{}, base...), tc.args...), &stdout, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("exit %d stderr %q, want 1 containing %q", code, stderr.String(), tc.stderr)
			}
		})
	}
}
