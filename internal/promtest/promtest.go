// Package promtest runs a real Prometheus server (Debian's prometheus
// package) on loopback for tests that must see what an operator's
// Prometheus would see: the scraped series and their values, through the
// server's own HTTP query API.
package promtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Target is one scrape job.
type Target struct {
	Job  string
	Addr string // host:port serving /metrics
	Path string // defaults to /metrics
	// MetricRelabelConfigs, if set, is the job's metric_relabel_configs
	// block as YAML (a list, at any indentation).
	MetricRelabelConfigs string
}

// Server is a running Prometheus.
type Server struct {
	URL string
}

// ScrapeInterval is short so tests see fresh samples within a second or two.
const ScrapeInterval = 500 * time.Millisecond

// Start runs prometheus scraping targets and waits until it is ready. It
// fails the test when the binary is missing: .ci/run installs it.
func Start(t testing.TB, targets ...Target) *Server {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not found (Debian package prometheus; .ci/run installs it): %v", err)
	}
	dir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\nscrape_configs:\n", ScrapeInterval, ScrapeInterval)
	for _, tg := range targets {
		path := tg.Path
		if path == "" {
			path = "/metrics"
		}
		fmt.Fprintf(&cfg, "  - job_name: %q\n    metrics_path: %q\n    static_configs:\n      - targets: [%q]\n", tg.Job, path, tg.Addr)
		if tg.MetricRelabelConfigs != "" {
			cfg.WriteString("    metric_relabel_configs:\n")
			for _, line := range strings.Split(dedent(tg.MetricRelabelConfigs), "\n") {
				if strings.TrimSpace(line) != "" {
					cfg.WriteString("      " + line + "\n")
				}
			}
		}
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited //nolint:errcheck // killed by cancel: the exit status says nothing
		logFile.Close()
	})
	s := &Server{URL: "http://" + addr}
	ready := time.NewTicker(50 * time.Millisecond)
	defer ready.Stop()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("prometheus exited before it was ready: %v\n%s", err, log)
		case <-deadline:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("prometheus not ready within 30s\n%s", log)
		case <-ready.C:
			resp, err := http.Get(s.URL + "/-/ready")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return s
				}
			}
		}
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Sample is one element of an instant vector.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query evaluates an instant PromQL query.
func (s *Server) Query(ctx context.Context, q string) ([]Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %q: decode: %w", q, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", q, body.Error)
	}
	if body.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result type %s, want vector", q, body.Data.ResultType)
	}
	out := make([]Sample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		str, ok := r.Value[1].(string)
		if !ok {
			return nil, fmt.Errorf("query %q: value %v is not a string", q, r.Value[1])
		}
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %q: %w", q, str, err)
		}
		out = append(out, Sample{Labels: r.Metric, Value: v})
	}
	return out, nil
}

// WaitFor polls q, one scrape interval apart, until ok accepts the result
// or timeout passes, and returns the last result. Polling is the only way
// to observe a scrape from outside; the loop is bounded.
func (s *Server) WaitFor(t testing.TB, q string, timeout time.Duration, ok func([]Sample) bool) []Sample {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(ScrapeInterval)
	defer tick.Stop()
	var last []Sample
	var lastErr error
	for {
		res, err := s.Query(ctx, q)
		if err == nil && ok(res) {
			return res
		}
		// A query cut short by the deadline must not hide the last answer.
		if err == nil {
			last = res
		}
		lastErr = err
		select {
		case <-ctx.Done():
			t.Fatalf("%q did not reach the expected value within %v: last %v (err %v)", q, timeout, last, lastErr)
		case <-tick.C:
		}
	}
}

// dedent removes the indentation common to every non-blank line of s.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	common := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " "))
		if common < 0 || n < common {
			common = n
		}
	}
	for i, l := range lines {
		if len(l) >= common && common > 0 {
			lines[i] = l[common:]
		}
	}
	return strings.Join(lines, "\n")
}
