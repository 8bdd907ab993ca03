package repository

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/maestro-ml/maestro/inference/runtime"
)

// fakeModel answers its version directory's name, so a test sees which
// version served.
type fakeModel struct {
	dir   string
	bytes int64
}

func (m *fakeModel) Predict(context.Context, []runtime.Tensor) ([]runtime.Tensor, error) {
	return []runtime.Tensor{{Name: "y", Datatype: runtime.Bytes, Shape: []int64{1}, Data: [][]byte{[]byte(m.dir)}}}, nil
}
func (m *fakeModel) MemoryBytes() int64 { return m.bytes }

// fakeLoader counts loads; an artifact file "artifact" holding "fail" or
// "panic" breaks the load, a number sets MemoryBytes. gate, when set, holds
// every load until closed.
type fakeLoader struct {
	loads   atomic.Int64
	gate    chan struct{}
	entered chan struct{} // gets one value per load, if set
}

func (f *fakeLoader) load(ctx context.Context, spec runtime.Spec) (runtime.Model, error) {
	f.loads.Add(1)
	if f.entered != nil {
		select {
		case f.entered <- struct{}{}:
		default:
		}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	data, err := os.ReadFile(filepath.Join(spec.Dir, "artifact"))
	if err != nil {
		return nil, err
	}
	switch s := strings.TrimSpace(string(data)); s {
	case "fail":
		return nil, errors.New("corrupt artifact")
	case "panic":
		panic("loader bug")
	default:
		var n int64
		if _, err := fmt.Sscan(s, &n); err != nil {
			return nil, fmt.Errorf("artifact %q: want fail, panic or a size: %w", s, err)
		}
		return &fakeModel{dir: filepath.Base(spec.Dir), bytes: n}, nil
	}
}

func writeModel(t *testing.T, dir, name string, artifacts ...string) {
	t.Helper()
	cfg := fmt.Sprintf("name: %s\nruntime: fake\nmax_batch_size: 8\ninputs: [{name: x, datatype: FP32, shape: [2]}]\noutputs: [{name: y, datatype: BYTES, shape: [1]}]\n", name)
	must(t, os.MkdirAll(filepath.Join(dir, name), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, name, ConfigFile), []byte(cfg), 0o644))
	for i, a := range artifacts {
		vdir := filepath.Join(dir, name, fmt.Sprint(i+1))
		must(t, os.MkdirAll(vdir, 0o755))
		must(t, os.WriteFile(filepath.Join(vdir, "artifact"), []byte(a), 0o644))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newRepo(t *testing.T, dir string, f *fakeLoader, opts Options) *Repository {
	t.Helper()
	opts.Dir = dir
	opts.Registry = runtime.Registry{"fake": f.load}
	r, err := New(opts)
	must(t, err)
	t.Cleanup(r.Close)
	return r
}

func servedVersion(t *testing.T, l *Loaded) string {
	t.Helper()
	out, err := l.Predict(context.Background(), nil)
	must(t, err)
	return string(out[0].Data.([][]byte)[0])
}

func TestGetResolvesVersions(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "m", "1", "1", "1")
	must(t, os.MkdirAll(filepath.Join(dir, "m", "not-a-version"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "m", "010"), 0o755))
	r := newRepo(t, dir, &fakeLoader{}, Options{})
	ctx := context.Background()

	tests := []struct{ ask, want string }{{"", "3"}, {"1", "1"}, {"2", "2"}}
	for _, tc := range tests {
		l, err := r.Get(ctx, "m", tc.ask)
		must(t, err)
		if got := servedVersion(t, l); got != tc.want || l.Version != tc.want {
			t.Errorf("Get(m, %q) served %s (Version %s), want %s", tc.ask, got, l.Version, tc.want)
		}
	}
	info, err := r.Info("m", "")
	must(t, err)
	if strings.Join(info.Versions, ",") != "1,2,3" {
		t.Errorf("versions = %v, want 1,2,3 (non-numeric and zero-padded directories ignored)", info.Versions)
	}
	if _, err := r.Get(ctx, "m", "4"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "versions: 1, 2, 3") {
		t.Errorf("unknown version: %v", err)
	}
	if _, err := r.Get(ctx, "nope", ""); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown model: %v", err)
	}
}

func TestConcurrentFirstUsesLoadOnce(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "m", "1")
	const callers = 32
	f := &fakeLoader{gate: make(chan struct{}), entered: make(chan struct{}, callers)}
	r := newRepo(t, dir, f, Options{})
	var started sync.WaitGroup
	started.Add(callers)
	g, ctx := errgroup.WithContext(context.Background())
	for range callers {
		g.Go(func() error {
			started.Done()
			_, err := r.Get(ctx, "m", "")
			return err
		})
	}
	started.Wait()
	// Hold the load open until a caller is inside it, so the others
	// find it in progress.
	select {
	case <-f.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no load started")
	}
	close(f.gate)
	must(t, g.Wait())
	if n := f.loads.Load(); n != 1 {
		t.Errorf("%d loads for %d concurrent first uses, want 1", n, callers)
	}
}

func TestFailedLoadKeepsReasonAndOthersServe(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "bad", "fail")
	writeModel(t, dir, "crash", "panic")
	writeModel(t, dir, "good", "1")
	must(t, os.MkdirAll(filepath.Join(dir, "noconfig", "1"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "fixtures"), 0o755)) // not a model: skipped
	f := &fakeLoader{}
	r := newRepo(t, dir, f, Options{})
	ctx := context.Background()

	for _, name := range []string{"bad", "crash"} {
		_, err := r.Get(ctx, name, "")
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s: got %v, want ErrUnavailable", name, err)
		}
		info, err := r.Info(name, "")
		must(t, err)
		if info.Err == nil {
			t.Errorf("%s: Info has no reason", name)
		}
	}
	_, err := r.Get(ctx, "bad", "")
	if !strings.Contains(err.Error(), "corrupt artifact") {
		t.Errorf("reason lost: %v", err)
	}
	if _, err := r.Get(ctx, "crash", ""); !strings.Contains(err.Error(), "panicked: loader bug") {
		t.Errorf("panic not reported: %v", err)
	}
	loads := f.loads.Load()
	_, _ = r.Get(ctx, "bad", "")
	if f.loads.Load() != loads {
		t.Error("a failed load is retried on every request; it must wait for an explicit Load")
	}
	if _, err := r.Get(ctx, "noconfig", ""); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "config.yaml is missing") {
		t.Errorf("model without config: %v", err)
	}
	if _, err := r.Get(ctx, "good", ""); err != nil {
		t.Errorf("good model: %v", err)
	}

	idx := r.Index(false)
	if _, err := r.Info("fixtures", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("a directory with neither config nor versions is listed: %v", err)
	}
	states := map[string]string{}
	for _, e := range idx {
		states[e.Name] = string(e.State) + " " + e.Reason
	}
	if !strings.HasPrefix(states["good"], "READY") || !strings.Contains(states["bad"], "UNAVAILABLE") || !strings.Contains(states["bad"], "corrupt") {
		t.Errorf("index = %v", states)
	}
	if ready := r.Index(true); len(ready) != 1 || ready[0].Name != "good" {
		t.Errorf("ready index = %+v", ready)
	}
}

func TestUnknownRuntimeNamesConfigLine(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "m", "1"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "m", ConfigFile), []byte("name: m\n\nruntime: onnx\ninputs: [{name: x, datatype: FP32, shape: [1]}]\noutputs: [{name: y, datatype: FP32, shape: [1]}]\n"), 0o644))
	r := newRepo(t, dir, &fakeLoader{}, Options{})
	_, err := r.Get(context.Background(), "m", "")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "config.yaml:3: runtime: unknown runtime \"onnx\" (known: fake)") {
		t.Errorf("got %v", err)
	}
}

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	tests := map[string]struct {
		opts    Options
		sizes   []string
		use     []string // models used in order
		want    []string // loaded at the end
		evicted int
	}{
		"max loaded": {
			opts: Options{MaxLoaded: 2}, sizes: []string{"10", "10", "10"},
			use: []string{"a", "b", "a", "c"}, want: []string{"a", "c"}, evicted: 1,
		},
		"memory budget": {
			opts: Options{MemoryBudget: 100}, sizes: []string{"40", "40", "70"},
			use: []string{"a", "b", "c"}, want: []string{"c"}, evicted: 2,
		},
		"budget keeps recent": {
			opts: Options{MemoryBudget: 100}, sizes: []string{"40", "40", "20"},
			use: []string{"a", "b", "c"}, want: []string{"a", "b", "c"}, evicted: 0,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for i, m := range []string{"a", "b", "c"} {
				writeModel(t, dir, m, tc.sizes[i])
			}
			obs := &countingObserver{}
			tc.opts.Observer = obs
			r := newRepo(t, dir, &fakeLoader{}, tc.opts)
			for _, m := range tc.use {
				_, err := r.Get(context.Background(), m, "")
				must(t, err)
			}
			var loaded []string
			for _, e := range r.Index(true) {
				loaded = append(loaded, e.Name)
			}
			if strings.Join(loaded, ",") != strings.Join(tc.want, ",") {
				t.Errorf("loaded %v, want %v", loaded, tc.want)
			}
			if int(obs.evictions.Load()) != tc.evicted {
				t.Errorf("%d evictions, want %d", obs.evictions.Load(), tc.evicted)
			}
			if st := r.Stats(); (tc.opts.MemoryBudget > 0 && st.Bytes > tc.opts.MemoryBudget) || (tc.opts.MaxLoaded > 0 && st.LoadedVersions > tc.opts.MaxLoaded) {
				t.Errorf("cache over its limits: %+v", st)
			}
		})
	}
}

func TestModelOverWholeBudgetFails(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "big", "500")
	r := newRepo(t, dir, &fakeLoader{}, Options{MemoryBudget: 100})
	_, err := r.Get(context.Background(), "big", "")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "needs 500 bytes, over the whole memory budget of 100") {
		t.Errorf("got %v", err)
	}
}

func TestExplicitLoadAndUnload(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "m", "fail")
	f := &fakeLoader{}
	r := newRepo(t, dir, f, Options{})
	ctx := context.Background()

	if err := r.Load(ctx, "m"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("load of a broken model: %v", err)
	}
	// Fix the artifact and add a version; Load re-reads the directory.
	writeModel(t, dir, "m", "1", "1")
	must(t, r.Load(ctx, "m"))
	l, err := r.Get(ctx, "m", "")
	must(t, err)
	if l.Version != "2" {
		t.Errorf("after reload serving v%s, want the new latest 2", l.Version)
	}

	must(t, r.Unload(ctx, "m"))
	if _, err := r.Get(ctx, "m", ""); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "unloaded") {
		t.Errorf("after unload: %v", err)
	}
	must(t, r.Load(ctx, "m"))
	if _, err := r.Get(ctx, "m", ""); err != nil {
		t.Errorf("after load again: %v", err)
	}

	// A model added after start appears on Load.
	writeModel(t, dir, "late", "1")
	if _, err := r.Get(ctx, "late", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("late model before Load: %v", err)
	}
	must(t, r.Load(ctx, "late"))
	if _, err := r.Get(ctx, "late", ""); err != nil {
		t.Errorf("late model after Load: %v", err)
	}
	for _, bad := range []string{"", "..", "../x", "missing"} {
		if err := r.Load(ctx, bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("Load(%q) = %v, want ErrNotFound", bad, err)
		}
	}
}

type countingObserver struct {
	nopObserver
	evictions atomic.Int64
}

func (c *countingObserver) Evicted(string, string) { c.evictions.Add(1) }

func TestCacheHoldsLimitsUnderConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	const models = 12
	for i := range models {
		writeModel(t, dir, fmt.Sprintf("m%02d", i), "10", "10")
	}
	obs := &countingObserver{}
	r := newRepo(t, dir, &fakeLoader{}, Options{MemoryBudget: 45, MaxLoaded: 6, Observer: obs})
	g, ctx := errgroup.WithContext(context.Background())
	for w := range 8 {
		g.Go(func() error {
			for i := range 200 {
				name, ver := fmt.Sprintf("m%02d", (w*7+i*5)%models), fmt.Sprint(1+(i+w)%2)
				l, err := r.Get(ctx, name, ver)
				if err != nil {
					return err
				}
				// An evicted model still answers the callers holding it.
				out, err := l.Predict(ctx, nil)
				if err != nil {
					return err
				}
				if got := string(out[0].Data.([][]byte)[0]); got != ver {
					return fmt.Errorf("%s v%s answered as v%s", name, ver, got)
				}
				// A load and its evictions happen under one lock, so the
				// limits hold at every instant, not just at the end.
				if st := r.Stats(); st.Bytes > 45 || st.LoadedVersions > 6 {
					return fmt.Errorf("cache at %+v, over its limits (45 bytes, 6 versions)", st)
				}
			}
			return nil
		})
	}
	must(t, g.Wait())
	if st := r.Stats(); st.Bytes > 45 || st.LoadedVersions > 6 {
		t.Errorf("cache settled at %+v, over its limits (45 bytes, 6 versions)", st)
	}
	if obs.evictions.Load() == 0 {
		t.Error("no evictions: the test did not exercise the limits")
	}
}

func TestIndexReasonsAndRelativePaths(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "a", "1")
	writeModel(t, dir, "b", "1")
	writeModel(t, dir, "bad", "fail")
	must(t, os.MkdirAll(filepath.Join(dir, "noconfig", "1"), 0o755))
	r := newRepo(t, dir, &fakeLoader{}, Options{})
	ctx := context.Background()
	if _, err := r.Get(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	must(t, r.Unload(ctx, "a"))
	_, _ = r.Get(ctx, "bad", "")
	_, noconfigErr := r.Get(ctx, "noconfig", "")
	got := map[string]IndexEntry{}
	for _, e := range r.Index(false) {
		got[e.Name] = e
		if strings.Contains(e.Reason, dir) {
			t.Errorf("%s: reason %q shows the repository's absolute path", e.Name, e.Reason)
		}
	}
	want := map[string]string{"a": ReasonUnloaded, "b": ReasonNotLoaded, "noconfig": "noconfig/config.yaml is missing"}
	for name, reason := range want {
		if e := got[name]; e.State != Unavailable || !strings.Contains(e.Reason, reason) {
			t.Errorf("%s: %s %q, want UNAVAILABLE %q", name, e.State, e.Reason, reason)
		}
	}
	if e := got["bad"]; e.State != Unavailable || e.Reason == "" {
		t.Errorf("bad: %s %q, want UNAVAILABLE with its reason", e.State, e.Reason)
	}
	if strings.Contains(noconfigErr.Error(), dir) {
		t.Errorf("error %q shows the repository's absolute path", noconfigErr)
	}
}
