package cost

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The inference server's series this package reads.
const (
	metricCPU         = "maestro_inference_model_cpu_seconds_total"
	metricPredictions = "maestro_inference_model_predictions_total"
	metricMemory      = "maestro_inference_model_memory_bytes"
	metricGOMAXPROCS  = "go_sched_gomaxprocs_threads"
	metricProcessCPU  = "process_cpu_seconds_total"
)

// maxMetricsBytes bounds one /metrics answer: a server with thousands of
// model versions stays far below it.
const maxMetricsBytes = 32 << 20

// Target is an inference server's metrics endpoint, optionally labelled
// with the policy service version it serves.
type Target struct {
	Service, ServiceVersion string
	URL                     string
}

// ParseTarget reads "URL" or "SERVICE/VERSION=URL". A URL without a path
// gets /metrics.
func ParseTarget(s string) (Target, error) {
	var t Target
	raw := s
	if i := strings.Index(s, "="); i >= 0 && !strings.Contains(s[:i], "://") {
		svc, ver, ok := strings.Cut(s[:i], "/")
		if !ok || svc == "" || ver == "" {
			return Target{}, fmt.Errorf("target %q: want SERVICE/VERSION=URL or URL", s)
		}
		t.Service, t.ServiceVersion, raw = svc, ver, s[i+1:]
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Target{}, fmt.Errorf("target %q: want an http(s) URL such as http://127.0.0.1:8080/metrics", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/metrics"
	}
	t.URL = u.String()
	return t, nil
}

// MV names a model version.
type MV struct{ Model, Version string }

// Meters are one model version's series in one scrape.
type Meters struct {
	CPUSeconds  float64
	Predictions float64
	MemoryBytes float64
	Loaded      bool // the memory gauge is present: the version is loaded
}

// Sample is one scrape of one target.
type Sample struct {
	At     time.Time
	Models map[MV]Meters
	Cores  float64 // GOMAXPROCS; 0 when not exported
	// ProcessCPU is the whole server's CPU seconds; 0 when not exported.
	ProcessCPU float64
}

// Scrape reads t's metrics once.
func Scrape(ctx context.Context, client *http.Client, t Target) (Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return Sample{}, fmt.Errorf("scrape %s: %w", t.URL, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return Sample{}, fmt.Errorf("scrape %s: %w", t.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Sample{}, fmt.Errorf("scrape %s: status %s", t.URL, resp.Status)
	}
	s, err := ParseMetrics(io.LimitReader(resp.Body, maxMetricsBytes))
	if err != nil {
		return Sample{}, fmt.Errorf("scrape %s: %w", t.URL, err)
	}
	return s, nil
}

// ParseMetrics reads the Prometheus text format and keeps the series cost
// needs.
func ParseMetrics(r io.Reader) (Sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return Sample{}, fmt.Errorf("parse metrics: %w", err)
	}
	s := Sample{At: time.Now(), Models: map[MV]Meters{}}
	each := func(name string, set func(*Meters, float64)) {
		for _, m := range fams[name].GetMetric() {
			k := MV{label(m, "model"), label(m, "version")}
			v := s.Models[k]
			set(&v, value(m))
			s.Models[k] = v
		}
	}
	each(metricCPU, func(m *Meters, v float64) { m.CPUSeconds = v })
	each(metricPredictions, func(m *Meters, v float64) { m.Predictions = v })
	each(metricMemory, func(m *Meters, v float64) { m.MemoryBytes, m.Loaded = v, true })
	if f := fams[metricGOMAXPROCS]; f != nil && len(f.GetMetric()) > 0 {
		s.Cores = value(f.GetMetric()[0])
	}
	if f := fams[metricProcessCPU]; f != nil && len(f.GetMetric()) > 0 {
		s.ProcessCPU = value(f.GetMetric()[0])
	}
	return s, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	default:
		return m.GetUntyped().GetValue()
	}
}

// Integrate turns a target's samples, in time order, into its rows:
// counter increases (a restart resets a counter, and its new value is
// the increase since), and memory integrated over time (trapezoids; a
// version absent from a sample holds nothing then).
func Integrate(t Target, samples []Sample) []Row {
	if len(samples) < 2 {
		return nil
	}
	rows := map[MV]*Row{}
	row := func(k MV) *Row {
		r := rows[k]
		if r == nil {
			r = &Row{Service: t.Service, ServiceVersion: t.ServiceVersion, Instance: t.URL, Model: k.Model, Version: k.Version}
			rows[k] = r
		}
		return r
	}
	for i := 1; i < len(samples); i++ {
		prev, cur := samples[i-1], samples[i]
		dt := cur.At.Sub(prev.At).Seconds()
		for k, c := range cur.Models {
			p := prev.Models[k]
			r := row(k)
			r.CoreSeconds += increase(p.CPUSeconds, c.CPUSeconds)
			r.Predictions += increase(p.Predictions, c.Predictions)
			r.GBSeconds += (p.MemoryBytes + c.MemoryBytes) / 2 * dt / bytesPerGB
		}
		for k, p := range prev.Models {
			if _, ok := cur.Models[k]; !ok {
				row(k).GBSeconds += p.MemoryBytes / 2 * dt / bytesPerGB
			}
		}
	}
	last := samples[len(samples)-1]
	out := make([]Row, 0, len(rows))
	for k, r := range rows {
		r.Resident = last.Models[k].Loaded
		r.Cores = last.Cores
		out = append(out, *r)
	}
	return out
}

func increase(prev, cur float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// ServerCPU is a target's whole-process CPU over its samples, to set
// against the models' share of it.
func ServerCPU(t Target, samples []Sample) Server {
	srv := Server{Instance: t.URL, Service: t.Service, ServiceVersion: t.ServiceVersion}
	for i := 1; i < len(samples); i++ {
		srv.ProcessCoreSeconds += increase(samples[i-1].ProcessCPU, samples[i].ProcessCPU)
	}
	return srv
}
