package watch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const waitLimit = 5 * time.Second

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// run starts a watcher on paths and returns the channel its reloads are
// reported on.
func run(t *testing.T, debounce time.Duration, paths ...string) <-chan struct{} {
	t.Helper()
	w, err := New(Config{Paths: paths, Debounce: debounce})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reloads := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func(context.Context) { reloads <- struct{}{} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return reloads
}

func waitReload(t *testing.T, reloads <-chan struct{}) {
	t.Helper()
	select {
	case <-reloads:
	case <-time.After(waitLimit):
		t.Fatal("no reload")
	}
}

func TestReloadOnChange(t *testing.T) {
	tests := map[string]struct {
		setup  func(t *testing.T, dir string) string // returns the watched path
		change func(t *testing.T, dir string)
	}{
		"file rewritten": {
			setup: func(t *testing.T, dir string) string {
				write(t, filepath.Join(dir, "mesh.yaml"), "a")
				return filepath.Join(dir, "mesh.yaml")
			},
			change: func(t *testing.T, dir string) { write(t, filepath.Join(dir, "mesh.yaml"), "b") },
		},
		"file replaced by rename (editor save)": {
			setup: func(t *testing.T, dir string) string {
				write(t, filepath.Join(dir, "mesh.yaml"), "a")
				return filepath.Join(dir, "mesh.yaml")
			},
			change: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "mesh.yaml.tmp"), "b")
				if err := os.Rename(filepath.Join(dir, "mesh.yaml.tmp"), filepath.Join(dir, "mesh.yaml")); err != nil {
					t.Fatal(err)
				}
			},
		},
		"file added to a directory": {
			setup:  func(t *testing.T, dir string) string { return dir },
			change: func(t *testing.T, dir string) { write(t, filepath.Join(dir, "routes.yaml"), "x") },
		},
		"file in a subdirectory": {
			setup: func(t *testing.T, dir string) string {
				if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			change: func(t *testing.T, dir string) { write(t, filepath.Join(dir, "sub", "a.yaml"), "x") },
		},
		"kubernetes configmap update (..data swap)": {
			setup: func(t *testing.T, dir string) string {
				mkConfigMap(t, dir, "..v1", "a")
				if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Join("..data", "mesh.yaml"), filepath.Join(dir, "mesh.yaml")); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(dir, "mesh.yaml")
			},
			change: func(t *testing.T, dir string) {
				// What kubelet's atomic writer does: a new timestamped
				// directory, a temporary link to it, renamed over ..data.
				mkConfigMap(t, dir, "..v2", "b")
				if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
					t.Fatal(err)
				}
			},
		},
		"file removed from a directory": {
			setup: func(t *testing.T, dir string) string { write(t, filepath.Join(dir, "old.yaml"), "a"); return dir },
			change: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "old.yaml")); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			reloads := run(t, 20*time.Millisecond, tc.setup(t, dir))
			tc.change(t, dir)
			waitReload(t, reloads)
		})
	}
}

func mkConfigMap(t *testing.T, dir, version, content string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, version, "mesh.yaml"), content)
}

func TestBurstCoalesces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mesh.yaml")
	write(t, path, "0")
	// A debounce far longer than the burst takes on any machine.
	reloads := run(t, 300*time.Millisecond, path)
	const writes = 20
	for i := range writes {
		write(t, path, string(rune('a'+i)))
	}
	waitReload(t, reloads)
	// A second, later change must still be seen: the watcher is not stuck.
	write(t, path, "final")
	waitReload(t, reloads)
	if extra := len(reloads); extra >= writes-2 {
		t.Fatalf("%d reloads for %d writes: the burst was not coalesced", extra+2, writes+1)
	}
}

func TestRelevant(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "mesh.yaml"), "a")
	sub := filepath.Join(t.TempDir(), "policies")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{Paths: []string{filepath.Join(dir, "mesh.yaml"), sub}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	tests := map[string]bool{
		filepath.Join(dir, "mesh.yaml"):        true,
		filepath.Join(dir, "other.yaml"):       false, // beside a watched file
		filepath.Join(sub, "routes.yaml"):      true,
		filepath.Join(sub, ".routes.yaml.swp"): false,
		filepath.Join(sub, "routes.yaml~"):     false,
		filepath.Join(sub, "new"):              true, // e.g. a new subdirectory
	}
	for name, want := range tests {
		if got := w.relevant(name); got != want {
			t.Errorf("relevant(%s) = %v, want %v", name, got, want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("no paths: want an error")
	}
	if _, err := New(Config{Paths: []string{filepath.Join(t.TempDir(), "missing.yaml")}}); err == nil {
		t.Error("missing path: want an error")
	}
}

func TestAddWatchesMoreFiles(t *testing.T) {
	dir := t.TempDir()
	mesh, eps := filepath.Join(dir, "mesh.yaml"), filepath.Join(t.TempDir(), "eps.yaml")
	write(t, mesh, "a")
	write(t, eps, "a")
	w, err := New(Config{Paths: []string{mesh}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	if w.relevant(eps) {
		t.Fatal("unwatched file is relevant")
	}
	if err := w.Add(eps, mesh); err != nil {
		t.Fatal(err)
	}
	if !w.relevant(eps) {
		t.Fatal("added file is not relevant")
	}
	if err := w.Add(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("adding a missing file: want an error")
	}
}
