package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// reliabilityDebounce is the watcher's quiet time in the reliability
// suite: short, so that the suite is quick; every wait is on an event, so
// a slow machine only makes it slower.
const reliabilityDebounce = 50 * time.Millisecond

// splitPolicy is a valid policy whose route splits fraud v1:v2 as w:100-w.
// The Service comes first, so that the file cut after it is a valid
// policy too (one without the route): a half-written file can be valid.
func splitPolicy(w int) string {
	return fmt.Sprintf(`apiVersion: maestro.dev/v1alpha1
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
  match: {model: fraud}
  split: [{version: v1, weight: %d}, {version: v2, weight: %d}]
`, w, 100-w)
}

// policyDir writes splitPolicy(90) as mesh.yaml in a new directory.
func policyDir(t *testing.T) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(path, []byte(splitPolicy(90)), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// replaceFile saves text at path atomically (write then rename), as a
// careful editor does.
func replaceFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func (r *running) status(t *testing.T) status {
	t.Helper()
	code, body := get(t, "http://"+r.addrs.Admin.String()+"/debug/status")
	if code != http.StatusOK {
		t.Fatalf("/debug/status = %d %s", code, body)
	}
	var st status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// waitFor returns the first reload event ok accepts. Unless allowed is
// nil, any applied reload of a version other than allowed fails the test:
// it means a state that must never be served was.
func (r *running) waitFor(t *testing.T, allowed []string, ok func(reloadEvent) bool) reloadEvent {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case ev := <-r.reloads:
			if ev.err == nil && allowed != nil && !contains(allowed, ev.version) {
				t.Fatalf("reload applied version %s, want one of %v", ev.version, allowed)
			}
			if ok(ev) {
				return ev
			}
		case <-deadline:
			t.Fatal("the expected reload did not come")
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestReliabilityPolicyWritePatterns replays the ways a policy directory
// is written badly, each against a running control plane serving a good
// version: the bad state is never applied, the last good version stays
// served, the failure is reported (status, /healthz, metrics), a later
// good save applies, and the control plane stops promptly afterwards.
func TestReliabilityPolicyWritePatterns(t *testing.T) {
	tests := map[string]struct {
		write func(t *testing.T, dir, path string)
		// want is in the reported error; skipped, if set, is the file
		// that must be reported skipped instead.
		want    string
		skipped string
	}{
		"empty (truncate before write)": {
			write: func(t *testing.T, _, path string) {
				if err := os.Truncate(path, 0); err != nil {
					t.Fatal(err)
				}
			},
			want: "empty policy file",
		},
		"truncated mid-document": {
			write: func(t *testing.T, _, path string) {
				text := splitPolicy(50)
				if err := os.WriteFile(path, []byte(text[:len(text)-20]), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: "invalid YAML",
		},
		"renamed away": {
			write: func(t *testing.T, _, path string) {
				if err := os.Rename(path, path+".orig"); err != nil {
					t.Fatal(err)
				}
			},
			want: "no .yaml, .yml or .json files",
		},
		"FIFO named like a policy": {
			write: func(t *testing.T, dir, _ string) {
				if err := syscall.Mkfifo(filepath.Join(dir, "zz-pipe.yaml"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			skipped: "zz-pipe.yaml",
		},
		"50 MB file": {
			write: func(t *testing.T, _, path string) {
				pad := strings.Repeat("# generated padding, as a runaway script would write it ....\n", (50<<20)/64)
				if err := os.WriteFile(path, []byte(splitPolicy(50)+pad), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: "more than the 16 MiB a policy file may have",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir, path := policyDir(t)
			r := runPlaneWith(t, dir, Config{Load: dryLoader(t, dir), Debounce: reliabilityDebounce})
			good := r.status(t).Version
			if good == "" {
				t.Fatal("no version served")
			}
			start := time.Now()
			tc.write(t, dir, path)
			if tc.skipped == "" {
				ev := r.waitFor(t, []string{good}, func(ev reloadEvent) bool { return ev.err != nil })
				if !strings.Contains(ev.err.Error(), tc.want) {
					t.Fatalf("reload error %q, want it to contain %q", ev.err, tc.want)
				}
			} else {
				r.waitFor(t, []string{good}, func(ev reloadEvent) bool { return ev.err == nil })
			}
			t.Logf("figure: reported %s after the write", time.Since(start).Round(time.Millisecond))

			st := r.status(t)
			if st.Version != good {
				t.Errorf("serving %s after the bad write, want the last good %s", st.Version, good)
			}
			_, metrics := get(t, "http://"+r.addrs.Admin.String()+"/metrics")
			_, health := get(t, "http://"+r.addrs.Admin.String()+"/healthz")
			if code, body := get(t, "http://"+r.addrs.Admin.String()+"/readyz"); code != http.StatusOK {
				t.Errorf("/readyz = %d %s while the last good version is served", code, body)
			}
			if tc.skipped == "" {
				if !strings.Contains(st.LastError, tc.want) {
					t.Errorf("status lastError %q, want %q", st.LastError, tc.want)
				}
				if !strings.Contains(health, "last policy reload failed") {
					t.Errorf("/healthz = %q, want it to say the last reload failed", health)
				}
				if !strings.Contains(metrics, "maestro_controlplane_reload_failing 1") {
					t.Error("/metrics: reload_failing is not 1")
				}
			} else {
				reason := st.Skipped[filepath.Join(dir, tc.skipped)]
				if !strings.Contains(reason, "named pipe") {
					t.Errorf("status skipped %v, want %s as a named pipe", st.Skipped, tc.skipped)
				}
				if !strings.Contains(metrics, "maestro_controlplane_policy_skipped_files 1") {
					t.Error("/metrics: policy_skipped_files is not 1")
				}
			}

			// A good save after it applies: the loader is not stuck.
			replaceFile(t, path, splitPolicy(50))
			r.waitFor(t, nil, func(ev reloadEvent) bool { return ev.err == nil && ev.version != good })
			if st := r.status(t); st.LastError != "" || st.Version == good {
				t.Errorf("after a good save: status %+v", st)
			}
			if _, metrics := get(t, "http://"+r.addrs.Admin.String()+"/metrics"); !strings.Contains(metrics, "maestro_controlplane_reload_failing 0") {
				t.Error("/metrics: reload_failing is not 0 after a good save")
			}
		})
	}
}

// slowWriter appends one chunk of a file each time the loader is about
// to read: every read races a write, as with a writer slower than the
// debounce, but deterministically.
type slowWriter struct {
	path string

	mu     sync.Mutex
	chunks []string
	done   bool
}

func (w *slowWriter) arm(chunks []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.chunks = chunks
}

func (w *slowWriter) finished() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

// step appends the next chunk, if any.
func (w *slowWriter) step() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.chunks) == 0 {
		return nil
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(w.chunks[0])
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	w.chunks = w.chunks[1:]
	w.done = len(w.chunks) == 0
	return err
}

// TestReliabilitySlowWriterIsNeverAppliedHalfWay saves a policy the way a
// slow non-atomic writer does (truncate, then append in pieces), with a
// piece landing during every read. One of the partial files is itself a
// valid policy: only re-reading until the files stop changing keeps it
// from being applied.
func TestReliabilitySlowWriterIsNeverAppliedHalfWay(t *testing.T) {
	dir, path := policyDir(t)
	final := splitPolicy(50)
	cut := strings.Index(final, "---")
	chunks := []string{final[:cut], final[cut : cut+60], final[cut+60:]}
	// The first piece alone (the Service without its Route) is valid.
	partial := filepath.Join(t.TempDir(), "partial.yaml")
	if err := os.WriteFile(partial, []byte(chunks[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Load(context.Background(), partial); err != nil {
		t.Fatalf("the fixture's partial file should be a valid policy: %v", err)
	}

	w := &slowWriter{path: path}
	inner := dryLoader(t, path)
	var (
		mu          sync.Mutex
		good        string
		halfApplied []string
	)
	r := runPlaneWith(t, dir, Config{
		Load: func(ctx context.Context, paths []string) (*model.Mesh, []string, error) {
			if err := w.step(); err != nil {
				return nil, nil, err
			}
			return inner(ctx, paths)
		},
		Debounce: reliabilityDebounce,
		OnReload: func(v string, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err == nil && good != "" && v != good && !w.finished() {
				halfApplied = append(halfApplied, v)
			}
		},
	})
	mu.Lock()
	good = r.status(t).Version
	mu.Unlock()
	w.arm(chunks)
	start := time.Now()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, nil, func(ev reloadEvent) bool { return ev.err == nil && ev.version != good })
	t.Logf("figure: the slow save applied %s after it began", time.Since(start).Round(time.Millisecond))
	mu.Lock()
	if len(halfApplied) > 0 {
		t.Errorf("versions %v applied while the file was still being written", halfApplied)
	}
	mu.Unlock()
	if !w.finished() {
		t.Error("a version was applied before the writer finished")
	}
	_, metrics := get(t, "http://"+r.addrs.Admin.String()+"/metrics")
	if !strings.Contains(metrics, "maestro_controlplane_policy_rereads_total") ||
		strings.Contains(metrics, "maestro_controlplane_policy_rereads_total 0\n") {
		t.Error("/metrics: no policy re-read counted")
	}
}

// TestReliabilityStuckLoaderIsNotReady: a reload that never returns (a
// loader waiting on a hung file system) turns /readyz unready once past
// stuckAfter, while /debug/status keeps answering and says a load runs.
func TestReliabilityStuckLoaderIsNotReady(t *testing.T) {
	dir, _ := policyDir(t)
	inner := dryLoader(t, dir)
	release, entered := make(chan struct{}), make(chan struct{})
	var calls int
	var mu sync.Mutex
	cfg := Config{Paths: []string{dir}, Insecure: true, Registry: telemetry.NewRegistry(),
		Load: func(ctx context.Context, paths []string) (*model.Mesh, []string, error) {
			mu.Lock()
			calls++
			n := calls
			mu.Unlock()
			if n > 1 {
				if n == 2 {
					close(entered)
				}
				select {
				case <-release:
				case <-ctx.Done():
					return nil, nil, ctx.Err()
				}
			}
			return inner(ctx, paths)
		}}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	cp, err := newPlane(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if why := cp.unready(time.Now()); why != "" {
		t.Fatalf("unready after a good load: %s", why)
	}
	done := make(chan error, 1)
	go func() { _, err := cp.reload(context.Background()); done <- err }()
	select {
	case <-entered:
	case <-time.After(waitLimit):
		t.Fatal("the second reload never started")
	}
	if !cp.status().Loading {
		t.Error("status does not say a load is running")
	}
	if why := cp.unready(time.Now()); why != "" {
		t.Errorf("unready %q while a reload has just started", why)
	}
	if why := cp.unready(time.Now().Add(cp.stuckAfter + time.Second)); !strings.Contains(why, "the loader is stuck") {
		t.Errorf("unready = %q past stuckAfter, want the loader reported stuck", why)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if why := cp.unready(time.Now().Add(time.Hour)); why != "" {
		t.Errorf("unready %q after the reload returned", why)
	}
}
