package metricsource

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/internal/promtest"
)

// TestPrometheusAnswers checks how API answers become numbers and errors,
// against a stand-in server answering as Prometheus documents it.
func TestPrometheusAnswers(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var status int
	var body, lastQuery string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/prom/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		lastQuery = r.URL.Query().Get("query")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	p, err := NewPrometheus(srv.URL+"/prom", nil)
	if err != nil {
		t.Fatal(err)
	}
	sel := InferenceSignals("fraud", "v2")
	vector := func(v string) string {
		return `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"` + v + `"]}]}}`
	}
	for _, c := range []struct {
		name      string
		status    int
		body      string
		quantile  bool
		want      float64
		err       error
		msg       string
		wantQuery string
	}{
		{name: "increase", status: 200, body: vector("42.5"), want: 42.5,
			wantQuery: `sum(increase(maestro_inference_requests_total{model="fraud",version="v2"}[90s]))`},
		{name: "no series is zero", status: 200, body: `{"status":"success","data":{"resultType":"vector","result":[]}}`, want: 0},
		{name: "scalar", status: 200, body: `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"7"]}}`, want: 7},
		{name: "quantile", status: 200, body: vector("0.25"), quantile: true, want: 0.25,
			wantQuery: `histogram_quantile(0.99, sum by (le) (increase(maestro_inference_request_duration_seconds_bucket{model="fraud",version="v2"}[90s])))`},
		{name: "quantile without observations", status: 200, body: vector("NaN"), quantile: true, err: ErrNoData},
		{name: "quantile no series", status: 200, body: `{"status":"success","data":{"resultType":"vector","result":[]}}`, quantile: true, err: ErrNoData},
		{name: "bad query", status: 400, body: `{"status":"error","errorType":"bad_data","error":"parse error at char 5"}`, msg: "bad_data: parse error at char 5"},
		{name: "unavailable", status: 503, body: `{"status":"error","errorType":"unavailable","error":"TSDB not ready"}`, err: ErrDown, msg: "TSDB not ready"},
		{name: "proxy error page", status: 502, body: `<html>bad gateway</html>`, err: ErrDown, msg: "HTTP 502"},
		{name: "not the API", status: 200, body: `<html>login</html>`, msg: "not a Prometheus API response"},
		{name: "matrix", status: 200, body: `{"status":"success","data":{"resultType":"matrix","result":[]}}`, msg: `result type "matrix"`},
		{name: "value not a string", status: 200, body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,2]}]}}`, msg: "is not a string"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			status, body = c.status, c.body
			mu.Unlock()
			var got float64
			var err error
			if c.quantile {
				got, err = p.Quantile(ctx, 0.99, sel.Latency, 90*time.Second)
			} else {
				got, err = p.Increase(ctx, sel.Requests, 90*time.Second)
			}
			if c.err != nil && !errors.Is(err, c.err) {
				t.Fatalf("got %v, %v; want %v", got, err, c.err)
			}
			if c.msg != "" && (err == nil || !strings.Contains(err.Error(), c.msg)) {
				t.Fatalf("got %v, %v; want an error containing %q", got, err, c.msg)
			}
			if c.err == nil && c.msg == "" && (err != nil || got != c.want) {
				t.Fatalf("got %v, %v; want %v", got, err, c.want)
			}
			mu.Lock()
			q := lastQuery
			mu.Unlock()
			if c.wantQuery != "" && q != c.wantQuery {
				t.Errorf("query %s, want %s", q, c.wantQuery)
			}
		})
	}
}

func TestPrometheusDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	p, err := NewPrometheus("http://"+addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Increase(context.Background(), Sel("x"), time.Minute); !errors.Is(err, ErrDown) {
		t.Errorf("got %v, want ErrDown", err)
	}
	for _, bad := range []string{"prometheus:9090", "ftp://p", "http://"} {
		if _, err := NewPrometheus(bad, nil); err == nil {
			t.Errorf("NewPrometheus(%q) accepted", bad)
		}
	}
}

// growing serves metrics that grow by a fixed amount at every scrape: 100
// requests of v2 (5 failing) spread over three latency buckets, so ratios
// and quantiles of any window are exact whatever the scrape timing.
type growing struct {
	mu sync.Mutex
	n  int
}

func (g *growing) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	g.mu.Lock()
	g.n++
	n := g.n
	g.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprint(w, inference("v2", 100*n, 5*n))
	fmt.Fprintf(w, `# TYPE maestro_inference_request_duration_seconds histogram
maestro_inference_request_duration_seconds_bucket{model="fraud",version="v2",protocol="grpc",le="0.1"} %d
maestro_inference_request_duration_seconds_bucket{model="fraud",version="v2",protocol="grpc",le="0.25"} %d
maestro_inference_request_duration_seconds_bucket{model="fraud",version="v2",protocol="grpc",le="1"} %d
maestro_inference_request_duration_seconds_bucket{model="fraud",version="v2",protocol="grpc",le="+Inf"} %d
maestro_inference_request_duration_seconds_sum{model="fraud",version="v2",protocol="grpc"} 1
maestro_inference_request_duration_seconds_count{model="fraud",version="v2",protocol="grpc"} %d
`, 50*n, 90*n, 100*n, 100*n, 100*n)
}

// TestRealPrometheus runs Debian's Prometheus scraping a test endpoint and
// checks the client's numbers against the endpoint's known growth.
func TestRealPrometheus(t *testing.T) {
	srv := httptest.NewServer(&growing{})
	t.Cleanup(srv.Close)
	prom := promtest.Start(t, promtest.Target{Job: "inference", Addr: strings.TrimPrefix(srv.URL, "http://")})
	p, err := NewPrometheus(prom.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	sig := InferenceSignals("fraud", "v2")
	window := 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// increase() needs two samples in the window: wait for them, bounded.
	tick := time.NewTicker(promtest.ScrapeInterval)
	defer tick.Stop()
	for {
		req, err := p.Increase(ctx, sig.Requests, window)
		if err != nil {
			t.Fatal(err)
		}
		if req > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no increase of %s within 60s", sig.Requests)
		case <-tick.C:
		}
	}
	// Both counters grow at every scrape; a query between the two
	// evaluations may see one more scrape, so compare rates loosely and
	// the error ratio on a second, stable pair of answers.
	errs, err := p.Increase(ctx, sig.Errors, window)
	if err != nil {
		t.Fatal(err)
	}
	req2, err := p.Increase(ctx, sig.Requests, window)
	if err != nil {
		t.Fatal(err)
	}
	if ratio := errs / req2; math.Abs(ratio-0.05) > 0.02 {
		t.Errorf("error ratio %v (errors %v, requests %v), want about 0.05", ratio, errs, req2)
	}
	for _, c := range []struct{ q, want float64 }{{0.7, 0.175}, {0.9, 0.25}, {0.95, 0.625}} {
		got, err := p.Quantile(ctx, c.q, sig.Latency, window)
		if err != nil || math.Abs(got-c.want) > 1e-9 {
			t.Errorf("p%v = %v, %v; want %v", c.q*100, got, err, c.want)
		}
	}
	if _, err := p.Quantile(ctx, 0.5, Sel("maestro_nothing_seconds"), window); !errors.Is(err, ErrNoData) {
		t.Errorf("quantile of a missing histogram: %v, want ErrNoData", err)
	}
	if _, err := p.Increase(ctx, Selector{Metric: "x", Matchers: []Matcher{{Name: "a", Value: "(", Regex: true}}}, window); err == nil || errors.Is(err, ErrDown) {
		t.Errorf("invalid regex: %v, want the server's bad_data error", err)
	}
}
