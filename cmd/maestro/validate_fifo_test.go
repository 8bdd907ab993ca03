package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestValidateRefusesEmptyAndSkipsFIFOs: an empty policy file is invalid,
// and a directory holding a FIFO named like a policy is validated without
// opening it (opening one waits for a writer, for ever).
func TestValidateRefusesEmptyAndSkipsFIFOs(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "policies", "proxyless.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), example, 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "pipe.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(empty, []byte("# nothing yet\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		path   string
		code   int
		stdout string
		stderr string
	}{
		"directory with a FIFO": {path: dir, stdout: "policy is valid", stderr: "warning: " + fifo + ": skipped: a named pipe (FIFO), not a regular file"},
		"FIFO by name":          {path: fifo, code: 1, stderr: "a named pipe (FIFO), not a regular file"},
		"empty file":            {path: empty, code: 1, stderr: empty + ": empty policy file: no documents"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			done := make(chan int, 1)
			go func() { done <- run(context.Background(), []string{"validate", "-f", tc.path}, &stdout, &stderr) }()
			var code int
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("validate did not return")
			}
			if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("exit %d, want %d; stdout %q, want %q; stderr %q, want %q", code, tc.code, stdout.String(), tc.stdout, stderr.String(), tc.stderr)
			}
		})
	}
}
