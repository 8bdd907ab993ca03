package server

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// unknownModel labels requests for models the repository does not have, so
// that callers cannot grow the metrics' label sets without bound.
const unknownModel = "_unknown"

// failedLabels labels a request whose model lookup failed: a model that
// exists but cannot serve keeps its name (the repository bounds those);
// anything else the caller named is counted as unknownModel. The version is
// left empty: a broken model accepts any version string.
func failedLabels(err error, model string) (string, string) {
	if errors.Is(err, repository.ErrUnavailable) {
		return model, ""
	}
	return unknownModel, ""
}

// metrics are the server's Prometheus series, named
// maestro_inference_<what>_<unit>. They also observe the repository's cache
// and batcher events.
type metrics struct {
	requests   *prometheus.CounterVec
	failures   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	batchRows  *prometheus.HistogramVec
	queueTime  *prometheus.HistogramVec
	hits       *prometheus.CounterVec
	misses     *prometheus.CounterVec
	evictions  *prometheus.CounterVec
	loadTime   *prometheus.HistogramVec
	loadErrors *prometheus.CounterVec
	// series holds each model version's children of the vectors above,
	// resolved once: resolving labels hashes them and takes a lock on every
	// call, several times per request. Keys are bounded as the label sets
	// are (unknown models share one).
	series sync.Map // seriesKey -> *modelSeries
	// last is the series looked up last: a server busy with one model
	// finds them with two string comparisons (the names are usually the
	// very same strings) instead of hashing both.
	last atomic.Pointer[modelSeries]
}

type seriesKey struct{ model, version string }

// modelSeries are one model version's per-request series.
type modelSeries struct {
	key       seriesKey
	hits      prometheus.Counter
	batchRows prometheus.Observer
	queueTime prometheus.Observer
	grpc      protocolSeries
	http      protocolSeries
}

type protocolSeries struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// of returns the series of model version; the first call resolves them.
func (m *metrics) of(model, version string) *modelSeries {
	if s := m.last.Load(); s != nil && s.key.model == model && s.key.version == version {
		return s
	}
	k := seriesKey{model, version}
	if s, ok := m.series.Load(k); ok {
		m.last.Store(s.(*modelSeries))
		return s.(*modelSeries)
	}
	proto := func(p string) protocolSeries {
		return protocolSeries{
			requests: m.requests.WithLabelValues(model, version, p),
			latency:  m.latency.WithLabelValues(model, version, p),
		}
	}
	s := &modelSeries{
		key:       k,
		hits:      m.hits.WithLabelValues(model, version),
		batchRows: m.batchRows.WithLabelValues(model, version),
		queueTime: m.queueTime.WithLabelValues(model, version),
		grpc:      proto("grpc"),
		http:      proto("http"),
	}
	got, _ := m.series.LoadOrStore(k, s)
	m.last.Store(got.(*modelSeries))
	return got.(*modelSeries)
}

// protocol returns the series of one protocol, "grpc" or "http".
func (s *modelSeries) protocol(p string) *protocolSeries {
	if p == "grpc" {
		return &s.grpc
	}
	return &s.http
}

func newMetrics(reg prometheus.Registerer) *metrics {
	ns, sub := telemetry.Namespace, "inference"
	mv := []string{"model", "version"}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "requests_total", Help: "Inference requests received, by model, version and protocol (grpc or http)."},
			[]string{"model", "version", "protocol"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "request_failures_total", Help: "Inference requests that failed, by model, version, protocol and gRPC status code."},
			[]string{"model", "version", "protocol", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "request_duration_seconds", Help: "Time to answer an inference request, from decoded request to encoded response.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}},
			[]string{"model", "version", "protocol"}),
		batchRows: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "batch_rows", Help: "Rows per model evaluation (merged batches for dynamically batched models).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12)}, mv),
		queueTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "queue_duration_seconds", Help: "Time a request waited in the dynamic batcher's queue.",
			Buckets: []float64{.00001, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05}}, mv),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "cache_hits_total", Help: "Requests that found their model version loaded."}, mv),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "cache_misses_total", Help: "Loads of a model version that was not loaded."}, mv),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "cache_evictions_total", Help: "Model versions unloaded to respect the memory budget or max loaded models."}, mv),
		loadTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "model_load_duration_seconds", Help: "Time to load a model version, failed loads included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, mv),
		loadErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "model_load_failures_total", Help: "Model version loads that failed."}, mv),
	}
	reg.MustRegister(m.requests, m.failures, m.latency, m.batchRows, m.queueTime,
		m.hits, m.misses, m.evictions, m.loadTime, m.loadErrors)
	return m
}

// registerCache exposes the cache's current use, read at scrape time.
func registerCache(reg prometheus.Registerer, repo *repository.Repository) {
	ns, sub := telemetry.Namespace, "inference"
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "loaded_models", Help: "Model versions currently loaded."},
			func() float64 { return float64(repo.Stats().LoadedVersions) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "loaded_model_bytes", Help: "Estimated memory held by the loaded model versions."},
			func() float64 { return float64(repo.Stats().Bytes) }),
	)
}

var _ repository.Observer = (*metrics)(nil)

func (m *metrics) CacheHit(model, version string)  { m.of(model, version).hits.Inc() }
func (m *metrics) CacheMiss(model, version string) { m.misses.WithLabelValues(model, version).Inc() }
func (m *metrics) Evicted(model, version string)   { m.evictions.WithLabelValues(model, version).Inc() }

func (m *metrics) Loaded(model, version string, took time.Duration, _ int64, err error) {
	m.loadTime.WithLabelValues(model, version).Observe(took.Seconds())
	if err != nil {
		m.loadErrors.WithLabelValues(model, version).Inc()
	}
}

func (m *metrics) Batch(model, version string, rows int64) {
	m.of(model, version).batchRows.Observe(float64(rows))
}

func (m *metrics) Queued(model, version string, waited time.Duration) {
	m.of(model, version).queueTime.Observe(waited.Seconds())
}
