// Package slo turns the mesh's service level objectives into what an
// operator runs to watch them: Prometheus recording and alerting rules
// (multi-window, multi-burn-rate, as the Google SRE workbook describes) and a
// Grafana dashboard. It reads plain objectives, so it can be fed from the
// policy or from anything else, and writes only data.
package slo

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Kind says which events an objective counts as bad.
type Kind string

// The kinds of objective.
const (
	// Availability and ErrorRate count failed requests as bad, as the slo
	// filter classifies them: no response, HTTP 5xx, or a gRPC status
	// other than OK. They differ only in how the policy states the target
	// (99.9% available, or at most 0.1% failing).
	Availability Kind = "availability"
	ErrorRate    Kind = "error_rate"
	// Latency counts requests slower than Threshold as bad: "Target of
	// requests finish within Threshold" is the Target*100th percentile.
	Latency Kind = "latency"
)

// Objective is one service level objective.
type Objective struct {
	// Name identifies the objective; it becomes the slo label of every
	// series and alert generated for it.
	Name string
	// Route is the policy route the SLI is measured on. Its Envoy routes
	// (one per match form and rule: fraud, fraud.rest, fraud.try-v2, ...)
	// are all counted; the filter tags them with '.' turned into '_'.
	Route string
	Model string // the model served on that route; empty matches any
	Kind  Kind
	// Target is the fraction of good events promised, e.g. 0.999.
	Target float64
	// Threshold is the latency a request must beat to be good (Latency
	// only).
	Threshold time.Duration
	// Window is the period the error budget covers, 30 days by default.
	Window time.Duration
}

// DefaultWindow is the error budget period used when an objective has none.
const DefaultWindow = 30 * 24 * time.Hour

// Metrics names the series the SLIs are computed from. The defaults are the
// names the slo filter's Envoy stats take in Prometheus (docs/metrics.md).
type Metrics struct {
	Requests string // counter of requests, labels route and model
	Errors   string // counter of failed requests, labels route and model
	// SlowRequests counts requests slower than a latency target, labels
	// route, model and target (p<percentile>_<threshold>ms, the
	// percentile's '.' written '_'). Counting against the exact threshold
	// needs no histogram bucket to fall on it.
	SlowRequests string
}

// DefaultMetrics returns the metric names the slo filter produces.
func DefaultMetrics() Metrics {
	return Metrics{
		Requests:     "maestro_slo_requests_total",
		Errors:       "maestro_slo_errors_total",
		SlowRequests: "maestro_slo_slow_requests_total",
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
		} else if o.Threshold%time.Millisecond != 0 {
			bad("threshold %v must be whole milliseconds, as the slo filter counts them", o.Threshold)
		}
	default:
		bad("kind %q: want availability, error_rate or latency", o.Kind)
	}
	return errors.Join(errs...)
}

// targetTag is the slo filter's tag of a latency target: p99_250ms,
// p99_9_100ms.
func (o Objective) targetTag() string {
	p := strconv.FormatFloat(math.Round(o.Target*100*1e6)/1e6, 'f', -1, 64)
	return "p" + strings.ReplaceAll(p, ".", "_") + "_" + strconv.FormatInt(o.Threshold.Milliseconds(), 10) + "ms"
}

func (o Objective) window() time.Duration {
	if o.Window == 0 {
		return DefaultWindow
	}
	return o.Window
}
