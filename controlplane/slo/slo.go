// Package slo turns the mesh's service level objectives into what an
// operator runs to watch them: Prometheus recording and alerting rules
// (multi-window, multi-burn-rate, as the Google SRE workbook describes) and a
// Grafana dashboard. It reads plain objectives, so it can be fed from the
// policy or from anything else, and writes only data.
package slo

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Kind says which events an objective counts as bad.
type Kind string

// The kinds of objective.
const (
	// Availability counts server-side failures (HTTP 5xx, gRPC UNAVAILABLE,
	// INTERNAL, DEADLINE_EXCEEDED, ...) as bad.
	Availability Kind = "availability"
	// ErrorRate counts every failed request as bad, client errors included.
	ErrorRate Kind = "error_rate"
	// Latency counts requests slower than Threshold as bad.
	Latency Kind = "latency"
)

// Objective is one service level objective.
type Objective struct {
	// Name identifies the objective; it becomes the slo label of every
	// series and alert generated for it.
	Name  string
	Route string // the mesh route the SLI is measured on
	Model string // the model served on that route; empty matches any
	Kind  Kind
	// Target is the fraction of good events promised, e.g. 0.999.
	Target float64
	// Threshold is the latency a request must beat to be good (Latency
	// only). It must be a bucket boundary of the duration histogram.
	Threshold time.Duration
	// Window is the period the error budget covers, 30 days by default.
	Window time.Duration
}

// DefaultWindow is the error budget period used when an objective has none.
const DefaultWindow = 30 * 24 * time.Hour

// Metrics names the series the SLIs are computed from. The defaults are the
// names the slo filter's Envoy stats take after the relabelling documented in
// docs/metrics.md.
type Metrics struct {
	Requests string // counter of requests, labels route and model
	Errors   string // counter of failed requests, labels route, model and class (client|server)
	// DurationBuckets is the _bucket series of the request duration
	// histogram, in milliseconds (Envoy records time histograms in ms).
	DurationBuckets string
	// Buckets are the histogram's bucket boundaries in milliseconds; a
	// latency threshold must be one of them, or the SLI cannot be computed
	// exactly.
	Buckets []float64
}

// DefaultMetrics returns the metric names the slo filter produces.
func DefaultMetrics() Metrics {
	return Metrics{
		Requests:        "maestro_slo_requests_total",
		Errors:          "maestro_slo_errors_total",
		DurationBuckets: "maestro_slo_request_duration_milliseconds_bucket",
		Buckets:         []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000},
	}
}

// ErrInvalidObjective is wrapped by every validation error.
var ErrInvalidObjective = errors.New("invalid objective")

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Validate checks o against m, returning every problem found.
func (o Objective) Validate(m Metrics) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("slo %q: %w: "+format, append([]any{o.Name, ErrInvalidObjective}, args...)...))
	}
	if !nameRE.MatchString(o.Name) {
		bad("name must match %s", nameRE)
	}
	if o.Route == "" {
		bad("route is required")
	}
	if !(o.Target > 0 && o.Target < 1) {
		bad("target %v must be between 0 and 1 (exclusive)", o.Target)
	}
	if o.Window < 0 || (o.Window > 0 && o.Window < 24*time.Hour) {
		bad("window %v must be at least 24h: the slowest alert looks back 3 days of a 30-day budget", o.Window)
	}
	switch o.Kind {
	case Availability, ErrorRate:
		if o.Threshold != 0 {
			bad("threshold is only for latency objectives")
		}
	case Latency:
		if o.Threshold <= 0 {
			bad("latency objectives need a threshold")
		} else if !hasBucket(m.Buckets, ms(o.Threshold)) {
			bad("threshold %v is not a bucket boundary of %s (ms: %v)", o.Threshold, m.DurationBuckets, m.Buckets)
		}
	default:
		bad("kind %q: want availability, error_rate or latency", o.Kind)
	}
	return errors.Join(errs...)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func hasBucket(buckets []float64, v float64) bool {
	for _, b := range buckets {
		if b == v {
			return true
		}
	}
	return false
}

func (o Objective) window() time.Duration {
	if o.Window == 0 {
		return DefaultWindow
	}
	return o.Window
}
