package policy

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// loadBounded runs Load and fails the test if it has not returned within
// a generous bound: opening a FIFO would block it for ever.
func loadBounded(t *testing.T, ctx context.Context, paths ...string) (*Mesh, error) {
	t.Helper()
	type result struct {
		m   *Mesh
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, err := Load(ctx, paths...)
		done <- result{m, err}
	}()
	select {
	case r := <-done:
		return r.m, r.err
	case <-time.After(30 * time.Second):
		t.Fatal("Load did not return: it blocked on a file")
		return nil, nil
	}
}

func TestLoadSkipsNonRegularFilesInADirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "base.yaml", base)
	fifo := filepath.Join(dir, "pipe.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// A socket named like a policy (its path must stay short).
	sock := filepath.Join(dir, "s.yaml")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	// A link to the FIFO is followed and skipped too.
	if err := os.Symlink("pipe.yaml", filepath.Join(dir, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	skipped := map[string]string{}
	ctx := WithSkipReport(context.Background(), func(path, reason string) { skipped[path] = reason })
	m, err := loadBounded(t, ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Service("fraud") == nil {
		t.Error("the regular file was not loaded")
	}
	for path, want := range map[string]string{fifo: "named pipe", sock: "socket", filepath.Join(dir, "link.yaml"): "named pipe"} {
		if !strings.Contains(skipped[path], want) {
			t.Errorf("skip report for %s = %q, want it to say %q (all: %v)", path, skipped[path], want, skipped)
		}
	}
	if len(skipped) != 3 {
		t.Errorf("skipped %v, want the three non-regular files", skipped)
	}
}

func TestLoadRefusesNonRegularFilesByName(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	eps := filepath.Join(dir, "eps.yaml")
	if err := syscall.Mkfifo(eps, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		paths []string
		want  string
	}{
		"named policy FIFO":  {[]string{fifo}, "pipe.yaml: a named pipe (FIFO), not a regular file"},
		"endpoints FIFO":     {[]string{write(t, dir, "p/svc.yaml", svc("s", "{versions: [{name: v1, endpointsFile: ../eps.yaml}]}"))}, "named pipe (FIFO), not a regular file"},
		"character device":   {[]string{os.DevNull}, "/dev/null: a character device, not a regular file"},
		"empty file by name": {[]string{write(t, dir, "empty.yaml", "")}, "empty.yaml: empty policy file"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := loadBounded(t, context.Background(), tc.paths...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadBoundsFileSizes(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	// Sparse: the size is checked before anything is read.
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(50 << 20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = loadBounded(t, context.Background(), big)
	if err == nil || !strings.Contains(err.Error(), "more than the 16 MiB a policy file may have") {
		t.Fatalf("50 MB file: got %v", err)
	}
	// Several files under the per-file bound still add up past the total.
	many := t.TempDir()
	chunk := strings.Repeat("# padding to make the file large\n", (12<<20)/33)
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		write(t, many, n+".yaml", base+chunk)
	}
	_, err = loadBounded(t, context.Background(), many)
	if err == nil || !strings.Contains(err.Error(), "add up to more than 64 MiB") {
		t.Fatalf("six 12 MB files: got %v", err)
	}
}

func TestLoadIgnoresHiddenEntries(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "mesh.yaml", base)
	// A Kubernetes ConfigMap keeps its files in a timestamped hidden
	// directory as well as behind the visible links; an editor leaves a
	// lock link pointing nowhere.
	write(t, dir, "..2026_01_01/mesh.yaml", base)
	if err := os.Symlink("user@host.1234", filepath.Join(dir, ".#mesh.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := loadBounded(t, context.Background(), dir); err != nil {
		t.Fatalf("hidden entries were read: %v", err)
	}
	if err := os.Symlink("nowhere.yaml", filepath.Join(dir, "dangling.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := loadBounded(t, context.Background(), dir); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a dangling visible link: got %v, want not-exist", err)
	}
}
