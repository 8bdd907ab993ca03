package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/server"
	"github.com/maestro-ml/maestro/controlplane/snapshot"
	"github.com/maestro-ml/maestro/controlplane/watch"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// plane is a running control plane: the translator's history, the server
// and the reload metrics.
type plane struct {
	cfg        Config
	log        *slog.Logger
	srv        *server.Server
	tracer     trace.Tracer
	translator *snapshot.Translator
	m          planeMetrics

	// mu serialises reloads and settling, which both move the
	// translator's history and the server's set forward.
	mu sync.Mutex
	// inputs are the files the last applied load read (endpoints files
	// outside the configured paths among them); guarded by mu.
	inputs []string
	// health is what the admin endpoints report of the loader. It has its
	// own lock so that a slow reload never holds up /readyz.
	health health
	// stuckAfter is how long a reload may run before /readyz says the
	// loader is stuck.
	stuckAfter time.Duration
	// closed is the policy last served, for the closed loop (overlay.go).
	closed closedState
	// observer is where adaptive ensembles post observations, set before
	// the first load (setObserver); nil without a loop.
	observer *model.Observer
}

// health is the loader's state as the admin endpoints show it.
type health struct {
	mu sync.Mutex
	// lastErr is the last reload's error, nil after a good one.
	lastErr error
	// lastReload and lastApplied are when the last reload ended and when
	// the last one that applied did.
	lastReload, lastApplied time.Time
	// loadingSince is when the running reload started; zero when none
	// runs.
	loadingSince time.Time
	// skipped are the non-regular files the last reload left out, with
	// why.
	skipped map[string]string
}

type planeMetrics struct {
	policyErrors prometheus.Counter
	reloads      *prometheus.CounterVec
	translate    prometheus.Histogram
	lastSuccess  prometheus.Gauge
	failing      prometheus.Gauge
	skipped      prometheus.Gauge
	rereads      prometheus.Counter
}

// Reload results, as metric label values.
const (
	resultApplied = "applied"
	resultInvalid = "invalid"
)

func newPlane(ctx context.Context, cfg Config) (*plane, error) {
	var auditLog *audit.Log
	if cfg.Certs != nil {
		auditLog = cfg.Certs.cfg.Audit
	}
	srv, err := server.New(ctx, server.Config{Logger: cfg.Logger, Registry: cfg.Registry, Tracer: cfg.Tracer, Audit: auditLog})
	if err != nil {
		return nil, err
	}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: telemetry.Namespace, Subsystem: "controlplane", Name: name, Help: help}
	}
	m := planeMetrics{
		policyErrors: prometheus.NewCounter(prometheus.CounterOpts(opts("policy_errors_total",
			"Problems found in rejected policy changes (each change counts every problem it has)."))),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts(opts("reloads_total",
			"Policy loads by result: applied, or invalid (the last good snapshot kept being served).")), []string{"result"}),
		translate: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: telemetry.Namespace, Subsystem: "controlplane", Name: "translate_seconds",
			Help:    "Time from reading the policy to a consistent snapshot set.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts(opts("last_reload_success_timestamp_seconds",
			"Unix time of the last policy load that was applied."))),
		failing: prometheus.NewGauge(prometheus.GaugeOpts(opts("reload_failing",
			"1 while the latest policy load failed (the last good configuration is served), else 0."))),
		skipped: prometheus.NewGauge(prometheus.GaugeOpts(opts("policy_skipped_files",
			"Files in policy directories the last load left out because they are not regular files (FIFOs, sockets, devices)."))),
		rereads: prometheus.NewCounter(prometheus.CounterOpts(opts("policy_rereads_total",
			"Policy reads discarded because a file changed while it was read (a save still being written)."))),
	}
	for _, c := range []prometheus.Collector{m.policyErrors, m.reloads, m.translate, m.lastSuccess, m.failing, m.skipped, m.rereads} {
		if err := cfg.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("control plane metrics: %w", err)
		}
	}
	return &plane{
		cfg:        cfg,
		log:        cfg.Logger,
		srv:        srv,
		tracer:     cfg.Tracer.Tracer("github.com/maestro-ml/maestro/controlplane"),
		translator: snapshot.NewTranslator(),
		m:          m,
		stuckAfter: reloadStuckAfter,
	}, nil
}

// reloadStuckAfter is how long a reload may run before /readyz reports
// the loader stuck: a policy of 10,000 routes loads in about two seconds
// on a loaded machine, so a minute means the loader waits on something
// that will not come (a hung network file system).
const reloadStuckAfter = time.Minute

// maxRereads bounds how many times one reload reads the policy again
// because a file kept changing while it was read; a writer still busy
// after that causes a watch event, hence another reload, anyway.
const maxRereads = 20

// errUnstable is a reload given up because the files never stopped
// changing while they were read.
var errUnstable = errors.New("policy files kept changing while being read; the last good configuration is still served")

// reload loads and translates the policy and serves the result. On any
// failure the error is logged (one line per policy problem, with its
// file:line:col and field) and counted, and the previous set stays served:
// the new set is applied whole or not at all.
func (cp *plane) reload(ctx context.Context) (files []string, err error) {
	return cp.load(ctx, false)
}

// refresh reloads without a file change (certificate renewal). A policy
// that is still broken in the same way is not reported again: it was
// logged and counted when the edit was made.
func (cp *plane) refresh(ctx context.Context) {
	_, _ = cp.load(ctx, true)
}

func (cp *plane) load(ctx context.Context, periodic bool) (files []string, err error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.health.mu.Lock()
	prevErr := cp.health.lastErr
	cp.health.loadingSince = time.Now()
	cp.health.mu.Unlock()
	rejected := func(err error) {
		if periodic && prevErr != nil && prevErr.Error() == err.Error() {
			cp.log.Debug("policy still invalid", "error", err)
			return
		}
		cp.rejected(err)
	}
	start := time.Now()
	ctx, span := cp.tracer.Start(ctx, "controlplane.translate")
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "policy rejected")
		}
		span.End()
		cp.settled(err, files)
	}()
	ctx, hook := cp.hook(ctx)
	mesh, files, skipped, err := cp.read(ctx)
	cp.skipped(skipped)
	if err != nil {
		rejected(err)
		return nil, err
	}
	set, err := cp.translator.Translate(mesh)
	if err != nil {
		rejected(err)
		return nil, fmt.Errorf("translate: %w", err)
	}
	cp.m.translate.Observe(time.Since(start).Seconds())
	span.SetAttributes(attribute.String("maestro.version", set.Version), attribute.Int("maestro.groups_changed", len(set.Changed)))
	unchanged := set.Version == cp.srv.Current().Version
	if err := cp.srv.Update(ctx, server.Set{Version: set.Version, Snapshots: set.Snapshots, Resolve: mesh.GroupFor}); err != nil {
		rejected(err)
		return nil, err
	}
	if cp.cfg.Certs != nil {
		cp.cfg.Certs.Applied()
	}
	cp.served(hook)
	// A refresh that changed nothing (certificates re-checked, none
	// renewed) is not a policy load: counting it would make the applied
	// count move with the certificate loop instead of with edits.
	if !periodic || !unchanged {
		cp.m.reloads.WithLabelValues(resultApplied).Inc()
	}
	cp.m.lastSuccess.SetToCurrentTime()
	level := slog.LevelInfo
	if unchanged {
		level = slog.LevelDebug // periodic refreshes and no-op saves
	}
	cp.log.Log(ctx, level, "policy applied", "version", set.Version, "changed", set.Changed, "removed", set.Removed,
		"duration", time.Since(start).Round(time.Microsecond))
	return files, nil
}

// read runs the Loader until the input files are the same after a read
// as before it, so that a save still being written (an editor that
// truncates then writes, a slow copy) is never applied half-way: a read
// that saw the files change is discarded, whatever its result, and done
// again once they have been still for the debounce. It returns the
// non-regular files the load left out of the policy directories.
func (cp *plane) read(ctx context.Context) (*model.Mesh, []string, map[string]string, error) {
	inputs := watched(cp.cfg.Paths, cp.inputs)
	for attempt := 0; ; attempt++ {
		skipped := map[string]string{}
		lctx := policy.WithSkipReport(ctx, func(path, reason string) { skipped[path] = reason })
		before := watch.Stamp(inputs...)
		mesh, files, err := cp.cfg.Load(lctx, cp.cfg.Paths)
		if ctx.Err() != nil || watch.Stamp(inputs...) == before {
			return mesh, files, skipped, err
		}
		cp.m.rereads.Inc()
		if attempt == maxRereads {
			return nil, nil, skipped, errUnstable
		}
		cp.log.Info("policy files changed while being read; reading them again once still")
		t := time.NewTimer(cp.cfg.Debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, skipped, fmt.Errorf("reload: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// skipped logs the files a load left out, when they differ from the last
// load's, and shows them on the status page and in a metric.
func (cp *plane) skipped(now map[string]string) {
	cp.health.mu.Lock()
	prev := cp.health.skipped
	cp.health.skipped = now
	cp.health.mu.Unlock()
	cp.m.skipped.Set(float64(len(now)))
	for _, path := range slices.Sorted(maps.Keys(now)) {
		if prev[path] != now[path] {
			cp.log.Warn("policy directory holds a file that is not a regular file; it is skipped, never opened",
				"path", path, "reason", now[path])
		}
	}
}

// settled records a reload's outcome for the admin endpoints.
func (cp *plane) settled(err error, files []string) {
	now := time.Now()
	if err == nil {
		cp.inputs = files
		cp.m.failing.Set(0)
	} else {
		cp.m.failing.Set(1)
	}
	cp.health.mu.Lock()
	defer cp.health.mu.Unlock()
	cp.health.lastErr, cp.health.lastReload, cp.health.loadingSince = err, now, time.Time{}
	if err == nil {
		cp.health.lastApplied = now
	}
}

// rejected logs and counts a failed load. Errors that join several
// problems (a policy error list) are logged one per line.
func (cp *plane) rejected(err error) {
	problems := leaves(err)
	cp.m.policyErrors.Add(float64(len(problems)))
	cp.m.reloads.WithLabelValues(resultInvalid).Inc()
	msg := "policy problem; the last good configuration is still served"
	if cp.srv.Current().Version == "" {
		msg = "policy not applied; no configuration is served yet"
	}
	for _, p := range problems {
		cp.log.Error(msg, "error", p.Error())
	}
}

// leaves flattens joined errors into their individual problems.
func leaves(err error) []error {
	var multi interface{ Unwrap() []error }
	if errors.As(err, &multi) {
		var out []error
		for _, e := range multi.Unwrap() {
			out = append(out, leaves(e)...)
		}
		if len(out) > 0 {
			return out
		}
	}
	return []error{err}
}

// settle drops the clusters kept for make-before-break.
func (cp *plane) settle(ctx context.Context) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	set, err := cp.translator.Settle()
	if err != nil {
		cp.log.Error("settle snapshots", "error", err)
		return
	}
	if set == nil {
		return
	}
	cur := cp.srv.Current()
	if err := cp.srv.Update(ctx, server.Set{Version: set.Version, Snapshots: set.Snapshots, Resolve: cur.Resolve}); err != nil {
		cp.log.Error("settle snapshots", "error", err)
	}
}

// status is the admin /debug/status document.
type status struct {
	Version string `json:"version"`
	// LastError is why the latest reload failed; empty after a good one.
	// The version above, the last good one, is still served.
	LastError   string              `json:"lastError,omitempty"`
	LastReload  *time.Time          `json:"lastReload,omitempty"`
	LastApplied *time.Time          `json:"lastApplied,omitempty"`
	Loading     bool                `json:"loading,omitempty"`
	Skipped     map[string]string   `json:"skipped,omitempty"`
	Nodes       []server.NodeStatus `json:"nodes"`
	// The routes, effective weights, rollouts and member weights.
	*closedloop.Status
}

func (cp *plane) status() status {
	st := status{Version: cp.srv.Current().Version, Nodes: cp.srv.Nodes()}
	h := &cp.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lastErr != nil {
		st.LastError = h.lastErr.Error()
	}
	if !h.lastReload.IsZero() {
		t := h.lastReload.UTC()
		st.LastReload = &t
	}
	if !h.lastApplied.IsZero() {
		t := h.lastApplied.UTC()
		st.LastApplied = &t
	}
	st.Loading = !h.loadingSince.IsZero()
	st.Skipped = maps.Clone(h.skipped)
	return st
}

// unready says why the control plane should not receive traffic: no
// configuration applied yet, or a reload running so long that the loader
// is stuck. A failed reload alone does not make it unready: it serves
// the last good configuration, and every replica reads the same policy,
// so turning them all unready for one bad edit would take the mesh's
// whole control plane out of its Service.
func (cp *plane) unready(now time.Time) string {
	if cp.cfg.Certs != nil {
		if err := cp.cfg.Certs.Ready(); err != nil {
			return err.Error()
		}
	}
	if cp.srv.Current().Version == "" {
		return "no policy applied yet"
	}
	cp.health.mu.Lock()
	since := cp.health.loadingSince
	cp.health.mu.Unlock()
	if !since.IsZero() && now.Sub(since) > cp.stuckAfter {
		return fmt.Sprintf("a policy reload has been running for %s: the loader is stuck", now.Sub(since).Round(time.Second))
	}
	return ""
}

func (cp *plane) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", telemetry.MetricsHandler(cp.cfg.Registry))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		// Liveness: the process answers. A failed reload is said here
		// too, for whoever looks, without failing the probe.
		st := cp.status()
		if st.LastError == "" {
			_, _ = w.Write([]byte("ok\n"))
			return
		}
		msg, _, _ := strings.Cut(st.LastError, "\n")
		fmt.Fprintf(w, "ok; serving version %s, but the last policy reload failed: %s\n", st.Version, msg)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := cp.unready(time.Now()); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if cp.cfg.Loop != nil {
		mux.Handle("POST /v1/feedback", cp.cfg.Loop.FeedbackHandler())
		mux.Handle("POST /v1/observations", cp.cfg.Loop.ObservationHandler())
	}
	mux.HandleFunc("GET /debug/status", func(w http.ResponseWriter, _ *http.Request) {
		st := cp.status()
		st.Status = cp.closedStatus()
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
	return mux
}
