package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/maestro-ml/maestro/controlplane/server"
	"github.com/maestro-ml/maestro/controlplane/snapshot"
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
	// lastErr is the last reload's error, nil after a good one; shown on
	// the admin status page.
	lastErr error
}

type planeMetrics struct {
	policyErrors prometheus.Counter
	reloads      *prometheus.CounterVec
	translate    prometheus.Histogram
	lastSuccess  prometheus.Gauge
}

// Reload results, as metric label values.
const (
	resultApplied = "applied"
	resultInvalid = "invalid"
)

func newPlane(ctx context.Context, cfg Config) (*plane, error) {
	srv, err := server.New(ctx, server.Config{Logger: cfg.Logger, Registry: cfg.Registry, Tracer: cfg.Tracer})
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
	}
	for _, c := range []prometheus.Collector{m.policyErrors, m.reloads, m.translate, m.lastSuccess} {
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
	}, nil
}

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
	prevErr := cp.lastErr
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
		cp.lastErr = err
	}()
	mesh, files, err := cp.cfg.Load(ctx, cp.cfg.Paths)
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
	cp.m.reloads.WithLabelValues(resultApplied).Inc()
	cp.m.lastSuccess.SetToCurrentTime()
	level := slog.LevelInfo
	if unchanged {
		level = slog.LevelDebug // periodic refreshes and no-op saves
	}
	cp.log.Log(ctx, level, "policy applied", "version", set.Version, "changed", set.Changed, "removed", set.Removed,
		"duration", time.Since(start).Round(time.Microsecond))
	return files, nil
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
	Version   string              `json:"version"`
	LastError string              `json:"lastError,omitempty"`
	Nodes     []server.NodeStatus `json:"nodes"`
}

func (cp *plane) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", telemetry.MetricsHandler(cp.cfg.Registry))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if cp.cfg.Certs != nil {
			if err := cp.cfg.Certs.Ready(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		if cp.srv.Current().Version == "" {
			http.Error(w, "no snapshot yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /debug/status", func(w http.ResponseWriter, _ *http.Request) {
		cp.mu.Lock()
		st := status{Version: cp.srv.Current().Version, Nodes: cp.srv.Nodes()}
		if cp.lastErr != nil {
			st.LastError = cp.lastErr.Error()
		}
		cp.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
	return mux
}
