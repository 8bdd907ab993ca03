package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/internal/syncbuf"
)

// policyWithWeight is a valid policy splitting fraud w:100-w, its CA state
// kept in caDir.
func policyWithWeight(caDir string, w int) string {
	return fmt.Sprintf(`apiVersion: maestro.dev/v1alpha1
kind: Mesh
metadata: {name: rel}
spec:
  ca: {issuer: builtin, builtin: {stateDir: %s}}
---
apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud, namespace: ml}
spec:
  versions:
    - {name: v1, endpoints: [{address: 127.0.0.1, port: 9001}]}
    - {name: v2, endpoints: [{address: 127.0.0.1, port: 9002}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud, namespace: ml}
spec:
  service: fraud
  target: fraud-scoring
  split: [{version: v1, weight: %d}, {version: v2, weight: %d}]
`, caDir, w, 100-w)
}

var adminRE = regexp.MustCompile(`admin=(127\.0\.0\.1:\d+)`)

// TestReliabilityControlPlaneWithAFIFOKeepsReloadingAndStops replays the
// freeze: a FIFO named like a policy appears in the watched directory.
// The control plane must skip it, apply a later edit, say so on its
// status page, and stop promptly when signalled (the command's context is
// what SIGTERM cancels).
func TestReliabilityControlPlaneWithAFIFOKeepsReloadingAndStops(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(t.TempDir(), "ca")
	path := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(path, []byte(policyWithWeight(caDir, 90)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"controlplane", "--insecure", "-f", dir, "--xds-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, &strings.Builder{}, &stderr)
	}()
	var admin string
	deadline := time.After(30 * time.Second)
	for admin == "" {
		if m := adminRE.FindStringSubmatch(stderr.String()); m != nil {
			admin = m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("control plane exited %d: %s", code, stderr.String())
		case <-deadline:
			t.Fatalf("control plane not serving: %s", stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	type status struct {
		Version string            `json:"version"`
		Skipped map[string]string `json:"skipped"`
	}
	get := func() status {
		t.Helper()
		res, err := http.Get("http://" + admin + "/debug/status")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var st status
		if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	first := get().Version
	fifo := filepath.Join(dir, "zz-pipe.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, ".mesh.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(policyWithWeight(caDir, 50)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deadline = time.After(30 * time.Second)
	for {
		st := get()
		if st.Version != first && st.Skipped[fifo] != "" {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("control plane exited %d: %s", code, stderr.String())
		case <-deadline:
			t.Fatalf("the edit after the FIFO was not applied (status %+v):\n%s", st, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Logf("figure: edit applied %s after it was saved beside a FIFO", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(stderr.String(), "zz-pipe.yaml") {
		t.Errorf("the skipped FIFO was not logged:\n%s", stderr.String())
	}
	stop := time.Now()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after the signal: %s", code, stderr.String())
		}
		t.Logf("figure: stopped %s after the signal", time.Since(stop).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("the control plane did not stop after the signal")
	}
}
