// Package metricsource reads the numbers rollouts and adaptive ensembles
// are judged on: increases of counters and quantiles of histograms over a
// time window, from either of two sources behind one interface. A Scraper
// reads the data plane's own Prometheus endpoints (Envoy's
// /stats/prometheus, the gateway's, inference servers' /metrics) and
// computes rates from successive scrapes, so a local mesh needs nothing
// else; a Prometheus client asks an existing Prometheus server's HTTP query
// API. Both refuse to guess: a target that is down or a series with too
// little history is an error (ErrDown, ErrNoData), never a zero that could
// promote a canary blind.
package metricsource

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrDown is wrapped when a source (a scrape target, the Prometheus
// server) cannot be read: the numbers would be incomplete.
var ErrDown = errors.New("metric source down")

// ErrNoData is wrapped when the source answers but holds too little to
// compute the number (one scrape, an empty histogram).
var ErrNoData = errors.New("no data")

// Source computes numbers over the window ending now.
type Source interface {
	// Increase returns how much the sum of the counters sel matches grew
	// within window (counter resets handled); 0 when sel matches none.
	Increase(ctx context.Context, sel Selector, window time.Duration) (float64, error)
	// Quantile estimates the q-quantile (0 < q < 1) of the observations
	// made within window of the histogram named hist.Metric (its series
	// hist.Metric+"_bucket", summed over those matching hist's labels),
	// in the histogram's own unit, interpolating inside a bucket as
	// Prometheus's histogram_quantile does. ErrNoData when none were made.
	Quantile(ctx context.Context, q float64, hist Selector, window time.Duration) (float64, error)
}

// Matcher matches one label: equal to Value, or, with Regex, fully
// matching the RE2 expression Value (as PromQL's =~ does).
type Matcher struct {
	Name, Value string
	Regex       bool
}

// Selector picks series: a metric name and label matchers, as a PromQL
// instant vector selector does.
type Selector struct {
	Metric   string
	Matchers []Matcher
}

// Sel returns the selector of metric with equality matchers given as
// name, value pairs.
func Sel(metric string, pairs ...string) Selector {
	s := Selector{Metric: metric}
	for i := 0; i+1 < len(pairs); i += 2 {
		s.Matchers = append(s.Matchers, Matcher{Name: pairs[i], Value: pairs[i+1]})
	}
	return s
}

// String formats s in PromQL: metric{a="b",c=~"d.*"}.
func (s Selector) String() string {
	if len(s.Matchers) == 0 {
		return s.Metric
	}
	parts := make([]string, len(s.Matchers))
	for i, m := range s.Matchers {
		op := "="
		if m.Regex {
			op = "=~"
		}
		parts[i] = m.Name + op + strconv.Quote(m.Value)
	}
	return s.Metric + "{" + strings.Join(parts, ",") + "}"
}

// compiled is a Selector ready to test series.
type compiled struct {
	metric string
	eq     map[string]string
	re     map[string]*regexp.Regexp
}

func (s Selector) compile() (*compiled, error) {
	c := &compiled{metric: s.Metric, eq: map[string]string{}, re: map[string]*regexp.Regexp{}}
	for _, m := range s.Matchers {
		if !m.Regex {
			c.eq[m.Name] = m.Value
			continue
		}
		re, err := regexp.Compile("^(?:" + m.Value + ")$")
		if err != nil {
			return nil, fmt.Errorf("selector %s: label %s: %w", s, m.Name, err)
		}
		c.re[m.Name] = re
	}
	return c, nil
}

// matches reports whether a series named name with labels is selected;
// an absent label is the empty string, as in Prometheus.
func (c *compiled) matches(name string, labels map[string]string) bool {
	if name != c.metric {
		return false
	}
	for k, v := range c.eq {
		if labels[k] != v {
			return false
		}
	}
	for k, re := range c.re {
		if !re.MatchString(labels[k]) {
			return false
		}
	}
	return true
}

// Signals are the selectors a canary version is judged on.
type Signals struct {
	Requests Selector // counter of requests served
	Errors   Selector // counter of failed requests
	// Latency is a histogram of request durations in units of LatencyUnit;
	// an empty Metric means latency is not measured.
	Latency     Selector
	LatencyUnit time.Duration
	// Agree and Disagree count compared rows of a shadow (fanout filter);
	// empty Metrics mean agreement is not measured.
	Agree, Disagree Selector
}

// InferenceSignals are the inference server's own metrics of one model
// version (docs/metrics.md): requests, failures of any code, and the
// request duration histogram in seconds.
func InferenceSignals(model, version string) Signals {
	return Signals{
		Requests:    Sel("maestro_inference_requests_total", "model", model, "version", version),
		Errors:      Sel("maestro_inference_request_failures_total", "model", model, "version", version),
		Latency:     Sel("maestro_inference_request_duration_seconds", "model", model, "version", version),
		LatencyUnit: time.Second,
	}
}

// EnvoyClusterSignals are Envoy's upstream statistics of one cluster as
// /stats/prometheus shows them when the cluster name is the
// envoy_cluster_name tag: requests, 5xx responses, and upstream time in
// milliseconds. gRPC errors answered with HTTP 200 are not counted here;
// InferenceSignals count them.
func EnvoyClusterSignals(cluster string) Signals {
	return Signals{
		Requests:    Sel("envoy_cluster_upstream_rq_total", "envoy_cluster_name", cluster),
		Errors:      Sel("envoy_cluster_upstream_rq_xx", "envoy_cluster_name", cluster, "envoy_response_code_class", "5"),
		Latency:     Sel("envoy_cluster_upstream_rq_time", "envoy_cluster_name", cluster),
		LatencyUnit: time.Millisecond,
	}
}

// SLOSignals are the slo filter's series of a policy route (every Envoy
// route of it: the route, its REST form and its rules, whose '.' the
// filter's tags write '_'), as the SLO alert rules read them: requests,
// failures and the latency histogram in milliseconds. They measure the
// route as a whole, stable and promoted versions together; a version's
// own numbers come from InferenceSignals or EnvoyClusterSignals.
func SLOSignals(route, model string) Signals {
	ms := []Matcher{{Name: "route", Value: regexp.QuoteMeta(route) + "(_.+)?", Regex: true}}
	if model != "" {
		ms = append(ms, Matcher{Name: "model", Value: model})
	}
	sel := func(metric string) Selector { return Selector{Metric: metric, Matchers: slices.Clone(ms)} }
	return Signals{
		Requests:    sel("maestro_slo_requests_total"),
		Errors:      sel("maestro_slo_errors_total"),
		Latency:     sel("maestro_slo_latency_ms"),
		LatencyUnit: time.Millisecond,
	}
}

// ShadowAgreement returns the fanout filter's row agreement counters of
// shadow (its label: the cluster name with '.' written '_') on every Envoy
// route of the policy route.
func ShadowAgreement(route, shadow string) (agree, disagree Selector) {
	ms := []Matcher{{Name: "route", Value: regexp.QuoteMeta(route) + "(_.+)?", Regex: true}, {Name: "shadow", Value: strings.ReplaceAll(shadow, ".", "_")}}
	return Selector{Metric: "maestro_fanout_shadow_class_agree_rows_total", Matchers: slices.Clone(ms)},
		Selector{Metric: "maestro_fanout_shadow_class_disagree_rows_total", Matchers: slices.Clone(ms)}
}
