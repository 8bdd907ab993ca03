package filterconfig

import (
	"fmt"
	"strings"
)

// DefaultObservePath is the control plane's observation endpoint
// (closedloop.ObservationHandler, on its admin port).
const DefaultObservePath = "/v1/observations"

// DefaultObserveTimeoutMs bounds an observation callout when Observe sets
// none: it is fire and forget, so the bound only frees the callout's slot.
const DefaultObserveTimeoutMs = 2000

// Observe makes the filter post, after combining, what every member and
// the ensemble answered to the control plane's observation endpoint, for
// the adaptive tuner. The callout never delays or fails the client's
// response: it is sent after the answer is settled, on behalf of the
// plugin, and a failed one is only counted
// (maestro_fanout_observe_failures_total).
type Observe struct {
	// Cluster is the Envoy cluster of the control plane's admin port.
	Cluster string `json:"cluster"`
	// Authority is the :authority of callouts; empty uses Cluster.
	Authority string `json:"authority,omitempty"`
	// Path is the endpoint's path; empty is DefaultObservePath.
	Path string `json:"path,omitempty"`
	// Route is the name the control plane knows the ensemble by (the
	// policy route), which differs from the Envoy route names.
	Route string `json:"route"`
	// Members are the members' names in observations, one per member in
	// Members order (the control plane's adaptive.MemberName).
	Members []string `json:"members"`
	// Percent of the route's requests observed, in (0, 100]: a callout per
	// request doubles the filter's outbound calls on a busy route.
	Percent float64 `json:"percent"`
	// TimeoutMs bounds the callout; 0 is DefaultObserveTimeoutMs.
	TimeoutMs uint32 `json:"timeoutMs,omitempty"`
}

// EffectivePath is Path, or DefaultObservePath when empty.
func (o *Observe) EffectivePath() string {
	if o.Path == "" {
		return DefaultObservePath
	}
	return o.Path
}

// EffectiveTimeoutMs is TimeoutMs, or DefaultObserveTimeoutMs when 0.
func (o *Observe) EffectiveTimeoutMs() uint32 {
	if o.TimeoutMs == 0 {
		return DefaultObserveTimeoutMs
	}
	return o.TimeoutMs
}

// validate checks o for a route of r; where is the field path of o.
func (o *Observe) validate(where string, r *FanoutRoute) []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", where, field, fmt.Sprintf(format, args...)))
	}
	if o.Cluster == "" {
		add("cluster", "must not be empty")
	}
	if o.Route == "" {
		add("route", "must not be empty")
	}
	if o.Path != "" && !strings.HasPrefix(o.Path, "/") {
		add("path", "must start with '/', got %q", o.Path)
	}
	if !finite(o.Percent) || o.Percent <= 0 || o.Percent > 100 {
		add("percent", "must be in (0, 100], got %v", o.Percent)
	}
	if r.Sequence || len(r.Members) == 0 {
		add("cluster", "only an ensemble's members are observed")
	}
	if len(o.Members) != len(r.Members) {
		add("members", "%d names for %d members", len(o.Members), len(r.Members))
	}
	for i, m := range o.Members {
		if m == "" {
			add(fmt.Sprintf("members[%d]", i), "must not be empty")
		}
	}
	return errs
}
