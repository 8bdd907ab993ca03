// Package repository serves models from a directory in Triton's layout
// (DIR/<model>/config.yaml, DIR/<model>/<version>/<artifact>). Models load
// lazily on first use, concurrent first uses load once, and a cache bounded
// by a memory budget and a model count evicts the least recently used.
// A model that fails to load keeps its reason; the others keep serving.
package repository

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/maestro-ml/maestro/inference/batching"
	"github.com/maestro-ml/maestro/inference/runtime"
)

// Errors callers map to protocol status codes; check them with errors.Is.
var (
	// ErrNotFound: no such model or version.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the model exists but cannot serve (a broken config or
	// a failed load); the error says why.
	ErrUnavailable = errors.New("unavailable")
)

// State is a model version's state, named as Triton's repository index
// names it.
type State string

// The states a version goes through.
const (
	Unavailable State = "UNAVAILABLE"
	Loading     State = "LOADING"
	Ready       State = "READY"
)

// Observer is told about cache events, for metrics. Every method must be
// cheap and safe for concurrent use.
type Observer interface {
	CacheHit(model, version string)
	CacheMiss(model, version string)
	Loaded(model, version string, took time.Duration, bytes int64, err error)
	Evicted(model, version string)
	Batch(model, version string, rows int64)
	Queued(model, version string, waited time.Duration)
}

// Options configures a Repository.
type Options struct {
	Dir      string
	Registry runtime.Registry
	// MemoryBudget caps the summed MemoryBytes of loaded models; 0 is no cap.
	MemoryBudget int64
	// MaxLoaded caps how many model versions are loaded; 0 is no cap.
	MaxLoaded int
	Logger    *slog.Logger // default: discard
	Observer  Observer     // default: none
	// Tracer, if set, traces the dynamic batchers' queues and batches.
	Tracer trace.Tracer
}

// Repository is the set of models under one directory. Its methods are safe
// for concurrent use.
type Repository struct {
	opts   Options
	root   string                            // the repository directory with a trailing separator, cut from messages
	models atomic.Pointer[map[string]*model] // replaced whole on a reload
	clock  atomic.Int64                      // LRU ticks
	mu     sync.Mutex                        // guards loads, evictions and the fields below
	bytes  int64
	count  int
}

type model struct {
	name      string
	dir       string
	config    *Config
	sig       runtime.Signature
	configErr error
	versions  []*version // ascending
}

type version struct {
	m        *model
	num      int64
	str      string
	ready    atomic.Pointer[Loaded]
	lastUsed atomic.Int64
	// Guarded by Repository.mu.
	loading chan struct{} // closed when the running load ends
	err     error         // the last load failure
}

// Loaded is a model version ready to predict.
type Loaded struct {
	Name      string
	Version   string
	Config    *Config
	Signature runtime.Signature
	model     runtime.Model
	batcher   *batching.Batcher
	bytes     int64
}

// Batched reports whether the model has a dynamic batcher, which observes
// its own batch sizes.
func (l *Loaded) Batched() bool { return l.batcher != nil }

// Predict evaluates inputs, through the model's dynamic batcher if it has
// one.
func (l *Loaded) Predict(ctx context.Context, inputs []runtime.Tensor) ([]runtime.Tensor, error) {
	if l.batcher != nil {
		return l.batcher.Predict(ctx, inputs)
	}
	return l.model.Predict(ctx, inputs)
}

// New scans opts.Dir. Broken models are kept with their reason; only an
// unreadable directory is an error.
func New(opts Options) (*Repository, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	r := &Repository{opts: opts}
	if abs, err := filepath.Abs(opts.Dir); err == nil {
		r.root = abs + string(filepath.Separator)
	}
	models, err := r.scanDir()
	if err != nil {
		return nil, err
	}
	for _, m := range models {
		if m.configErr != nil {
			opts.Logger.Warn("model cannot serve", "model", m.name, "reason", m.configErr)
		}
	}
	r.models.Store(&models)
	return r, nil
}

// Info describes a model without loading it.
type Info struct {
	Name      string
	Config    *Config // nil when the config is broken
	Signature runtime.Signature
	Versions  []string // ascending
	// Err is why the model, or the version asked for, cannot serve; nil
	// when it is ready or not loaded yet.
	Err error
}

// Info describes model name; version "" is the latest.
func (r *Repository) Info(name, ver string) (Info, error) {
	m, err := r.lookup(name)
	if err != nil {
		return Info{}, err
	}
	info := Info{Name: name, Config: m.config, Signature: m.sig}
	for _, v := range m.versions {
		info.Versions = append(info.Versions, v.str)
	}
	if m.configErr != nil {
		info.Err = fmt.Errorf("%w: %w", ErrUnavailable, r.rel(m.configErr))
		return info, nil
	}
	v, err := m.version(ver)
	if err != nil {
		return Info{}, err
	}
	r.mu.Lock()
	if v.err != nil {
		info.Err = fmt.Errorf("%w: %w", ErrUnavailable, r.rel(v.err))
	}
	r.mu.Unlock()
	return info, nil
}

func (r *Repository) lookup(name string) (*model, error) {
	m := (*r.models.Load())[name]
	if m == nil {
		return nil, fmt.Errorf("model %q %w", name, ErrNotFound)
	}
	return m, nil
}

// version resolves ver; "" is the latest.
func (m *model) version(ver string) (*version, error) {
	if len(m.versions) == 0 {
		return nil, fmt.Errorf("model %q has no versions: %w", m.name, ErrUnavailable)
	}
	if ver == "" {
		return m.versions[len(m.versions)-1], nil
	}
	for _, v := range m.versions {
		if v.str == ver {
			return v, nil
		}
	}
	have := make([]string, len(m.versions))
	for i, v := range m.versions {
		have[i] = v.str
	}
	return nil, fmt.Errorf("model %q version %q %w (versions: %s)", m.name, ver, ErrNotFound, strings.Join(have, ", "))
}

// Get returns the loaded model version, loading it on first use; version ""
// is the latest. Concurrent first uses share one load. A failed load is
// remembered (ErrUnavailable with the reason) until an explicit Load.
func (r *Repository) Get(ctx context.Context, name, ver string) (*Loaded, error) {
	m, err := r.lookup(name)
	if err != nil {
		return nil, err
	}
	if m.configErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, r.rel(m.configErr))
	}
	v, err := m.version(ver)
	if err != nil {
		return nil, err
	}
	if l := v.ready.Load(); l != nil {
		v.lastUsed.Store(r.clock.Add(1))
		r.opts.Observer.CacheHit(m.name, v.str)
		return l, nil
	}
	return r.load(ctx, v, false)
}

// load loads v unless it is loaded already; retry forgets a past failure.
func (r *Repository) load(ctx context.Context, v *version, retry bool) (*Loaded, error) {
	m := v.m
	r.mu.Lock()
	for {
		if l := v.ready.Load(); l != nil {
			r.mu.Unlock()
			v.lastUsed.Store(r.clock.Add(1))
			r.opts.Observer.CacheHit(m.name, v.str)
			return l, nil
		}
		if v.loading == nil {
			break
		}
		ch := v.loading
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for model %q v%s to load: %w", m.name, v.str, ctx.Err())
		}
		r.mu.Lock()
		retry = false // the load just finished is the retry
	}
	if v.err != nil && !retry {
		err := v.err
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, r.rel(err))
	}
	done := make(chan struct{})
	v.loading, v.err = done, nil
	r.mu.Unlock()

	r.opts.Observer.CacheMiss(m.name, v.str)
	l, err := r.loadModel(ctx, v)

	r.mu.Lock()
	var evicted []*Loaded
	stale := (*r.models.Load())[m.name] != m
	switch {
	case err != nil:
		v.err = err
	case stale:
		// A reload replaced the model meanwhile: serve this caller, but do
		// not cache what nobody can evict.
		evicted = append(evicted, l)
	default:
		v.ready.Store(l)
		v.lastUsed.Store(r.clock.Add(1))
		r.bytes += l.bytes
		r.count++
		evicted = r.evictLocked(v)
	}
	v.loading = nil
	close(done)
	r.mu.Unlock()
	for _, e := range evicted {
		if e == l {
			e.close()
			continue
		}
		r.opts.Logger.Info("model evicted", "model", e.Name, "version", e.Version, "bytes", e.bytes)
		r.opts.Observer.Evicted(e.Name, e.Version)
		e.close()
	}
	if err != nil {
		r.opts.Logger.Warn("model failed to load", "model", m.name, "version", v.str, "reason", err)
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, r.rel(err))
	}
	return l, nil
}

// loadModel runs the runtime's loader for v. The load outlives a caller
// that gives up, because others may be waiting for it.
func (r *Repository) loadModel(ctx context.Context, v *version) (*Loaded, error) {
	m := v.m
	start := time.Now()
	spec := runtime.Spec{
		Name:      m.name,
		Version:   v.str,
		Dir:       joinDir(m.dir, v.str),
		Signature: m.sig,
		Params:    m.config.Parameters,
	}
	mod, err := r.loadSafely(context.WithoutCancel(ctx), m.config.Runtime, spec)
	var bytes int64
	if err == nil {
		bytes = mod.MemoryBytes()
		if b := r.opts.MemoryBudget; b > 0 && bytes > b {
			err = fmt.Errorf("model %q v%s needs %d bytes, over the whole memory budget of %d", m.name, v.str, bytes, b)
		}
	}
	r.opts.Observer.Loaded(m.name, v.str, time.Since(start), bytes, err)
	if err != nil {
		return nil, err
	}
	l := &Loaded{Name: m.name, Version: v.str, Config: m.config, Signature: m.sig, model: mod, bytes: bytes}
	if d := m.config.DynamicBatching; d != nil {
		name, ver := m.name, v.str
		l.batcher = batching.New(mod, batching.Config{
			MaxBatchSize:   m.config.MaxBatchSize,
			MaxQueueDelay:  d.MaxQueueDelay(),
			PreferredSizes: d.PreferredBatchSize,
			ObserveBatch:   func(n int64) { r.opts.Observer.Batch(name, ver, n) },
			ObserveQueue:   func(w time.Duration) { r.opts.Observer.Queued(name, ver, w) },
			Tracer:         r.opts.Tracer,
		})
	}
	r.opts.Logger.Info("model loaded", "model", m.name, "version", v.str, "bytes", bytes, "took", time.Since(start))
	return l, nil
}

// loadSafely turns a loader panic into a load failure: a broken artifact
// must not take the server down.
func (r *Repository) loadSafely(ctx context.Context, rt string, spec runtime.Spec) (mod runtime.Model, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("load model %q v%s: runtime %s panicked: %v", spec.Name, spec.Version, rt, p)
		}
	}()
	mod, err = r.opts.Registry.Load(ctx, rt, spec)
	if err != nil {
		return nil, fmt.Errorf("load model %q v%s: %w", spec.Name, spec.Version, err)
	}
	if mod == nil {
		return nil, fmt.Errorf("load model %q v%s: runtime %s returned no model", spec.Name, spec.Version, rt)
	}
	return mod, nil
}

func (l *Loaded) close() {
	if l.batcher != nil {
		l.batcher.Close()
	}
}

// evictLocked unloads least recently used versions other than keep until
// the cache is within its limits, and returns them to be closed outside the
// lock.
func (r *Repository) evictLocked(keep *version) []*Loaded {
	var out []*Loaded
	for r.overLocked() {
		var victim *version
		for _, m := range *r.models.Load() {
			for _, v := range m.versions {
				if v == keep || v.ready.Load() == nil {
					continue
				}
				if victim == nil || v.lastUsed.Load() < victim.lastUsed.Load() {
					victim = v
				}
			}
		}
		if victim == nil {
			break
		}
		out = append(out, r.unloadLocked(victim))
	}
	return out
}

func (r *Repository) overLocked() bool {
	return (r.opts.MemoryBudget > 0 && r.bytes > r.opts.MemoryBudget) ||
		(r.opts.MaxLoaded > 0 && r.count > r.opts.MaxLoaded)
}

func (r *Repository) unloadLocked(v *version) *Loaded {
	l := v.ready.Swap(nil)
	if l != nil {
		r.bytes -= l.bytes
		r.count--
	}
	return l
}

// Stats is the cache's current use.
type Stats struct {
	LoadedVersions int
	Bytes          int64
}

// Stats reports the cache's current use.
func (r *Repository) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{LoadedVersions: r.count, Bytes: r.bytes}
}

// Close unloads every model and stops their batchers.
func (r *Repository) Close() {
	r.mu.Lock()
	var out []*Loaded
	for _, m := range *r.models.Load() {
		for _, v := range m.versions {
			if l := r.unloadLocked(v); l != nil {
				out = append(out, l)
			}
		}
	}
	r.mu.Unlock()
	for _, l := range out {
		l.close()
	}
}

type nopObserver struct{}

func (nopObserver) CacheHit(string, string)                            {}
func (nopObserver) CacheMiss(string, string)                           {}
func (nopObserver) Loaded(string, string, time.Duration, int64, error) {}
func (nopObserver) Evicted(string, string)                             {}
func (nopObserver) Batch(string, string, int64)                        {}
func (nopObserver) Queued(string, string, time.Duration)               {}
