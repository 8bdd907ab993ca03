package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/inference/inferencetest"
)

func TestCostBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no source", nil, "give --target URL (repeatable) or --prometheus URL"},
		{"both sources", []string{"--target", "http://127.0.0.1:1", "--prometheus", "http://127.0.0.1:2"}, "give --target URL"},
		{"negative price", []string{"--target", "http://127.0.0.1:1", "--cpu-price", "-1"}, "prices must not be negative"},
		{"zero window", []string{"--target", "http://127.0.0.1:1", "--window", "0s"}, "--window and --interval must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"cost"}, tc.args...), &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

// TestCostSourceErrors: a bad target or an unreachable source is an
// error naming it, not an empty report.
func TestCostSourceErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	l.Close()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad target", []string{"--target", "fraud=http://127.0.0.1:1"}, `target "fraud=http://127.0.0.1:1": want SERVICE/VERSION=URL or URL`},
		{"target down", []string{"--target", down}, "scrape " + down + "/metrics: Get"},
		{"prometheus down", []string{"--prometheus", down}, "prometheus " + down + ": Get"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"cost"}, tc.args...), &stdout, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

// TestCostReportsIdleModelAndRoute watches a real server holding a loaded
// model that gets no traffic, through the policy's route.
func TestCostReportsIdleModelAndRoute(t *testing.T) {
	dir := t.TempDir()
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "fraud", MemoryBytes: 256 << 20})
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: dir, Name: "cost-cli"})
	if _, err := srv.Server.Repository().Get(context.Background(), "fraud", ""); err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(t.TempDir(), "mesh.yaml")
	mesh := `apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud}
spec:
  versions: [{name: v1, endpoints: [{address: 127.0.0.1, port: 9001}]}]
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud-route}
spec:
  service: fraud
  match: {model: fraud}
`
	if err := os.WriteFile(policyFile, []byte(mesh), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"cost", "--target", "fraud/v1=http://" + srv.HTTPAddr, "-f", policyFile,
		"--window", "300ms", "--interval", "100ms", "--memory-price", "1"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"fraud  1        fraud/v1  1         0",
		"fraud-route  0",
		"split fraud@fraud/v1",
		"SERVER  ",
		"http://" + srv.HTTPAddr + "/metrics  fraud/v1",
		// 0.25 GiB at $1 per GB-hour for 730 hours.
		// The window is 300ms or a little more on a loaded machine.
		"[idle] fraud v1 on fraud/v1: loaded on 1 replica(s) but served 0 predictions in ",
		"0.250 GB held on average",
		"(saves about $182.50 a month)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
