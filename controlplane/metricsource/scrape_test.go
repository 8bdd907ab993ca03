package metricsource

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// endpoint is a data-plane metrics endpoint whose text the test sets.
type endpoint struct {
	mu     sync.Mutex
	body   string
	status int
	srv    *httptest.Server
}

func newEndpoint(t *testing.T) *endpoint {
	e := &endpoint{status: http.StatusOK}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.status != http.StatusOK {
			http.Error(w, "down", e.status)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, e.body)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) set(body string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.body, e.status = body, http.StatusOK
}

func (e *endpoint) fail(status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.status = status
}

// clock is a manual clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func inference(version string, req, fail int) string {
	return fmt.Sprintf(`# TYPE maestro_inference_requests_total counter
maestro_inference_requests_total{model="fraud",version=%q,protocol="grpc"} %d
# TYPE maestro_inference_request_failures_total counter
maestro_inference_request_failures_total{model="fraud",version=%q,protocol="grpc",code="13"} %d
`, version, req, version, fail)
}

func scrapeAt(t *testing.T, s *Scraper, c *clock, step time.Duration) error {
	t.Helper()
	c.add(step)
	return s.Scrape(context.Background())
}

func TestScraperIncrease(t *testing.T) {
	ctx := context.Background()
	a, b := newEndpoint(t), newEndpoint(t)
	c := newClock()
	s := NewScraper(ScraperConfig{Now: c.now, Targets: []Target{{Name: "a", URL: a.srv.URL}, {Name: "b", URL: b.srv.URL}}})
	sel := InferenceSignals("fraud", "v2")

	a.set(inference("v2", 100, 1))
	b.set(inference("v2", 40, 0))
	if err := scrapeAt(t, s, c, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Increase(ctx, sel.Requests, time.Minute); !errors.Is(err, ErrNoData) {
		t.Fatalf("one scrape: got %v, want ErrNoData", err)
	}
	a.set(inference("v2", 160, 4))
	b.set(inference("v2", 10, 2)) // b restarted: its counters began again
	if err := scrapeAt(t, s, c, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	a.set(inference("v2", 260, 5))
	b.set(inference("v2", 30, 2))
	if err := scrapeAt(t, s, c, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		window    time.Duration
		req, errs float64
		why       string
	}{
		{10 * time.Second, 100 + 20, 1 + 0, "last two scrapes"},
		{20 * time.Second, 160 + 30, 4 + 2, "three scrapes, b reset counted from 0"},
		{time.Hour, 160 + 30, 4 + 2, "history shorter than the window: the oldest scrape"},
		{15 * time.Second, 160 + 30, 4 + 2, "base at or before the window start"},
	} {
		req, err := s.Increase(ctx, sel.Requests, w.window)
		if err != nil || req != w.req {
			t.Errorf("%s: requests %v, %v; want %v", w.why, req, err, w.req)
		}
		e, err := s.Increase(ctx, sel.Errors, w.window)
		if err != nil || e != w.errs {
			t.Errorf("%s: errors %v, %v; want %v", w.why, e, err, w.errs)
		}
	}
	if n, err := s.Increase(ctx, InferenceSignals("fraud", "v9").Requests, time.Minute); err != nil || n != 0 {
		t.Errorf("unmatched selector: %v, %v; want 0", n, err)
	}

	// A target that fails makes every answer an error: its share of the
	// traffic is unknown.
	b.fail(http.StatusServiceUnavailable)
	err := scrapeAt(t, s, c, 10*time.Second)
	if !errors.Is(err, ErrDown) || !strings.Contains(err.Error(), "scrape b") {
		t.Fatalf("scrape with b down: %v", err)
	}
	if _, err := s.Increase(ctx, sel.Requests, time.Minute); !errors.Is(err, ErrDown) {
		t.Fatalf("query with b down: got %v, want ErrDown", err)
	}
	// Back up: b's base is its last good scrape, before it went down.
	b.set(inference("v2", 50, 3))
	if err := scrapeAt(t, s, c, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Increase(ctx, sel.Errors, 15*time.Second); err != nil || n != 0+1 {
		t.Errorf("after recovery: errors %v, %v; want 1 (a flat, b 2->3)", n, err)
	}
}

func TestScraperNewTargetHasNoRateYet(t *testing.T) {
	ctx := context.Background()
	a, b := newEndpoint(t), newEndpoint(t)
	c := newClock()
	s := NewScraper(ScraperConfig{Now: c.now, Targets: []Target{{Name: "a", URL: a.srv.URL}}})
	a.set(inference("v1", 10, 0))
	b.set(inference("v1", 1000, 0))
	_ = scrapeAt(t, s, c, 0)
	a.set(inference("v1", 20, 0))
	_ = scrapeAt(t, s, c, 5*time.Second)
	s.SetTargets([]Target{{Name: "a", URL: a.srv.URL}, {Name: "b", URL: b.srv.URL}})
	a.set(inference("v1", 30, 0))
	_ = scrapeAt(t, s, c, 5*time.Second)
	// b's 1000 were served before it was watched: not counted.
	if n, err := s.Increase(ctx, Sel("maestro_inference_requests_total"), time.Minute); err != nil || n != 20 {
		t.Errorf("got %v, %v; want 20", n, err)
	}
}

const envoyHistogram = `# TYPE envoy_cluster_upstream_rq_time histogram
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="fraud_v2",le="100"} %d
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="fraud_v2",le="250"} %d
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="fraud_v2",le="1000"} %d
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="fraud_v2",le="+Inf"} %d
envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="fraud_v2"} 0
envoy_cluster_upstream_rq_time_count{envoy_cluster_name="fraud_v2"} %d
`

func TestScraperQuantile(t *testing.T) {
	ctx := context.Background()
	a := newEndpoint(t)
	c := newClock()
	s := NewScraper(ScraperConfig{Now: c.now, Targets: []Target{{Name: "envoy", URL: a.srv.URL}}})
	sig := EnvoyClusterSignals("fraud_v2")
	// Before the window: 1000 fast requests, which must not count.
	a.set(fmt.Sprintf(envoyHistogram, 1000, 1000, 1000, 1000, 1000))
	_ = scrapeAt(t, s, c, 0)
	// In the window: 50 <= 100ms, 40 in (100, 250], 10 in (250, 1000].
	a.set(fmt.Sprintf(envoyHistogram, 1050, 1090, 1100, 1100, 1100))
	_ = scrapeAt(t, s, c, 10*time.Second)
	for _, w := range []struct{ q, want float64 }{{0.7, 175}, {0.95, 625}} {
		got, err := s.Quantile(ctx, w.q, sig.Latency, 10*time.Second)
		if err != nil || math.Abs(got-w.want) > 1e-9 {
			t.Errorf("p%v = %v, %v; want %v", w.q*100, got, err, w.want)
		}
	}
	_ = scrapeAt(t, s, c, 10*time.Second) // nothing new
	if _, err := s.Quantile(ctx, 0.99, sig.Latency, 10*time.Second); !errors.Is(err, ErrNoData) {
		t.Errorf("empty window: got %v, want ErrNoData", err)
	}
}

func TestScraperRegexAndAgreement(t *testing.T) {
	ctx := context.Background()
	a := newEndpoint(t)
	c := newClock()
	s := NewScraper(ScraperConfig{Now: c.now, Targets: []Target{{Name: "gw", URL: a.srv.URL}}})
	body := `maestro_fanout_shadow_class_agree_rows_total{route="fraud",shadow="fraud_v3"} %d
maestro_fanout_shadow_class_agree_rows_total{route="fraud_rest",shadow="fraud_v3"} %d
maestro_fanout_shadow_class_agree_rows_total{route="fraudster",shadow="fraud_v3"} 999
maestro_fanout_shadow_class_disagree_rows_total{route="fraud",shadow="fraud_v3"} %d
`
	a.set(fmt.Sprintf(body, 0, 0, 0))
	_ = scrapeAt(t, s, c, 0)
	a.set(fmt.Sprintf(body, 90, 5, 5))
	_ = scrapeAt(t, s, c, time.Second)
	agree, disagree := ShadowAgreement("fraud", "fraud.v3")
	if n, err := s.Increase(ctx, agree, time.Minute); err != nil || n != 95 {
		t.Errorf("agree = %v, %v; want 95 (fraud and fraud_rest, not fraudster)", n, err)
	}
	if n, err := s.Increase(ctx, disagree, time.Minute); err != nil || n != 5 {
		t.Errorf("disagree = %v, %v; want 5", n, err)
	}
	if _, err := s.Increase(ctx, Selector{Metric: "x", Matchers: []Matcher{{Name: "a", Value: "(", Regex: true}}}, time.Minute); err == nil {
		t.Error("bad regex accepted")
	}
}

func TestScraperBounds(t *testing.T) {
	a := newEndpoint(t)
	c := newClock()
	s := NewScraper(ScraperConfig{Now: c.now, Targets: []Target{{Name: "a", URL: a.srv.URL}}, Retention: time.Minute, MaxScrapes: 4, MaxBody: 200})
	a.set(inference("v1", 1, 0))
	for i := 0; i < 10; i++ {
		_ = scrapeAt(t, s, c, 10*time.Second)
	}
	if n := len(s.scrapes); n != 4 {
		t.Errorf("kept %d scrapes, want MaxScrapes 4", n)
	}
	s2 := NewScraper(ScraperConfig{Now: c.now, Targets: []Target{{Name: "a", URL: a.srv.URL}}, Retention: 25 * time.Second})
	for i := 0; i < 10; i++ {
		_ = scrapeAt(t, s2, c, 10*time.Second)
	}
	if n := len(s2.scrapes); n != 4 {
		t.Errorf("kept %d scrapes, want 4: 25s of 10s scrapes plus the base before", n)
	}
	a.set(inference("v1", 1, 0) + strings.Repeat("# padding\n", 100))
	if err := s.Scrape(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than 200 bytes") {
		t.Errorf("oversized body: %v", err)
	}
	a.set("not { prometheus text")
	if err := s.Scrape(context.Background()); !errors.Is(err, ErrDown) || !strings.Contains(err.Error(), "parse") {
		t.Errorf("garbage body: %v", err)
	}
}

// TestScraperSLOStats reads the slo filter's stats as an older Envoy shows
// them (envoy_wasmcustom_ prefix) and a newer one (none), for the route's
// every Envoy route and no other.
func TestScraperSLOStats(t *testing.T) {
	ctx := context.Background()
	old, cur := newEndpoint(t), newEndpoint(t)
	c := newClock()
	s := NewScraper(ScraperConfig{Now: c.now, Targets: []Target{{Name: "old", URL: old.srv.URL}, {Name: "new", URL: cur.srv.URL}}})
	stats := `# TYPE %[1]smaestro_slo_requests_total counter
%[1]smaestro_slo_requests_total{route="fraud",model="fraud"} %[2]d
%[1]smaestro_slo_requests_total{route="fraud_rest",model="fraud"} %[2]d
%[1]smaestro_slo_requests_total{route="fraud-ensemble",model="fraud"} 1000
# TYPE %[1]smaestro_slo_errors_total counter
%[1]smaestro_slo_errors_total{route="fraud",model="fraud"} %[3]d
# TYPE %[1]smaestro_slo_latency_ms histogram
%[1]smaestro_slo_latency_ms_bucket{route="fraud",model="fraud",le="50"} %[2]d
%[1]smaestro_slo_latency_ms_bucket{route="fraud",model="fraud",le="+Inf"} %[2]d
%[1]smaestro_slo_latency_ms_sum{route="fraud",model="fraud"} 0
%[1]smaestro_slo_latency_ms_count{route="fraud",model="fraud"} %[2]d
`
	old.set(fmt.Sprintf(stats, "envoy_wasmcustom_", 0, 0))
	cur.set(fmt.Sprintf(stats, "", 0, 0))
	_ = scrapeAt(t, s, c, 0)
	old.set(fmt.Sprintf(stats, "envoy_wasmcustom_", 10, 1))
	cur.set(fmt.Sprintf(stats, "", 30, 2))
	_ = scrapeAt(t, s, c, 10*time.Second)
	sig := SLOSignals("fraud", "fraud")
	if n, err := s.Increase(ctx, sig.Requests, time.Minute); err != nil || n != 2*10+2*30 {
		t.Errorf("requests %v, %v; want 80 (both forms of fraud on both Envoys, not fraud-ensemble)", n, err)
	}
	if n, err := s.Increase(ctx, sig.Errors, time.Minute); err != nil || n != 3 {
		t.Errorf("errors %v, %v; want 3", n, err)
	}
	if q, err := s.Quantile(ctx, 0.5, sig.Latency, time.Minute); err != nil || q != 25 {
		t.Errorf("median %v ms, %v; want 25", q, err)
	}
}

// TestScraperReadsClientGolang scrapes metrics as the inference server
// exposes them (client_golang's registry through promhttp, same names and
// labels), so the parser is checked against the real producer's output.
func TestScraperReadsClientGolang(t *testing.T) {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "maestro_inference_requests_total", Help: "h"}, []string{"model", "version", "protocol"})
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "maestro_inference_request_failures_total", Help: "h"}, []string{"model", "version", "protocol", "code"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "maestro_inference_request_duration_seconds", Help: "h", Buckets: []float64{.01, .1, 1}}, []string{"model", "version", "protocol"})
	reg.MustRegister(requests, failures, latency)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	c := newClock()
	s := NewScraper(ScraperConfig{Now: c.now, Targets: []Target{{Name: "inference", URL: srv.URL}}})
	_ = scrapeAt(t, s, c, 0)
	for i := range 100 {
		requests.WithLabelValues("fraud", "2", "grpc").Inc()
		requests.WithLabelValues("fraud", "1", "grpc").Inc()
		if i%10 == 0 {
			failures.WithLabelValues("fraud", "2", "grpc", "13").Inc()
		}
		latency.WithLabelValues("fraud", "2", "grpc").Observe(0.05)
	}
	if err := scrapeAt(t, s, c, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	sig := InferenceSignals("fraud", "2")
	ctx := context.Background()
	if n, err := s.Increase(ctx, sig.Requests, time.Minute); err != nil || n != 100 {
		t.Errorf("requests %v, %v; want 100", n, err)
	}
	if n, err := s.Increase(ctx, sig.Errors, time.Minute); err != nil || n != 10 {
		t.Errorf("failures %v, %v; want 10", n, err)
	}
	// Every observation is in (0.01, 0.1]: the median interpolates to
	// the middle of that bucket.
	if q, err := s.Quantile(ctx, 0.5, sig.Latency, time.Minute); err != nil || math.Abs(q-0.055) > 1e-12 {
		t.Errorf("median %v, %v; want 0.055", q, err)
	}
}
