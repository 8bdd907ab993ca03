package filterconfig

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// SLO defaults, applied by the Effective* methods.
const (
	DefaultShortWindowSeconds = 300  // 5 minutes
	DefaultLongWindowSeconds  = 3600 // 1 hour
	DefaultShortBurnThreshold = 14.4 // spends 2% of a 30-day budget in 1 hour
	DefaultLongBurnThreshold  = 6.0  // spends 5% of a 30-day budget in 6 hours
	DefaultEvaluateMs         = 1000
	// DefaultBuckets is how many buckets the short window is cut into; the
	// bucket width is the granularity of both rolling windows.
	DefaultBuckets = 10
)

// SLO is the slo filter's plugin configuration: the objectives it meters.
// A request is metered by the first objective matching its route and model;
// requests no objective matches pass unmetered.
type SLO struct {
	// Objectives are matched in order.
	Objectives []SLOObjective `json:"objectives"`
	// EvaluateMs is how often (ms) each worker merges its counts into the
	// shared windows and checks burn rates; 0 means DefaultEvaluateMs.
	EvaluateMs uint32 `json:"evaluateMs,omitempty"`
}

// SLOObjective is one service-level objective for a route and model.
type SLOObjective struct {
	// Route is the Envoy route name (xds.route_name); empty matches any.
	Route string `json:"route,omitempty"`
	// Model is the model name from the request (REST path
	// /v2/models/<model>/..., or model_name of a gRPC ModelInfer); empty
	// matches any, and metrics are then tagged with the request's model.
	Model string `json:"model,omitempty"`
	// Availability is the target fraction of good requests, in (0, 1), e.g.
	// 0.999. Exactly one of Availability and ErrorRate is set.
	Availability float64 `json:"availability,omitempty"`
	// ErrorRate is the allowed fraction of failed requests, in (0, 1);
	// the same objective as Availability = 1 - ErrorRate.
	ErrorRate float64 `json:"errorRate,omitempty"`
	// Latency targets: "Percentile % of requests finish within
	// ThresholdMs"; each has its own burn rate.
	Latency []LatencyTarget `json:"latency,omitempty"`
	// ShortWindowSeconds and LongWindowSeconds are the rolling windows of
	// the burn rates; 0 means the defaults (300 and 3600). Short < long.
	ShortWindowSeconds uint32 `json:"shortWindowSeconds,omitempty"`
	LongWindowSeconds  uint32 `json:"longWindowSeconds,omitempty"`
	// ShortBurnThreshold and LongBurnThreshold are the burn rates (budget
	// spend speed, 1 = exactly on budget) above which a log line is written;
	// 0 means the defaults (14.4 and 6).
	ShortBurnThreshold float64 `json:"shortBurnThreshold,omitempty"`
	LongBurnThreshold  float64 `json:"longBurnThreshold,omitempty"`
	// BudgetHeader, when set, names a response header carrying the
	// remaining error budget of the long window (1 = untouched, 0 = spent,
	// negative = overspent).
	BudgetHeader string `json:"budgetHeader,omitempty"`
}

// LatencyTarget is a latency objective: Percentile percent of requests
// complete within ThresholdMs milliseconds.
type LatencyTarget struct {
	Percentile  float64 `json:"percentile"`
	ThresholdMs uint32  `json:"thresholdMs"`
}

// ParseSLO decodes and validates an slo plugin configuration; unknown
// fields are errors.
//
// # Errors
// A JSON error names the line and column; a validation error names each
// bad field's path.
func ParseSLO(data []byte) (*SLO, error) {
	var s SLO
	if err := parse("slo config", data, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks the whole configuration and returns every problem found,
// each naming its field path.
func (s *SLO) Validate() error {
	var errs []error
	if len(s.Objectives) == 0 {
		errs = append(errs, errors.New("objectives: at least one objective is required"))
	}
	seen := map[[2]string]int{}
	for i := range s.Objectives {
		o := &s.Objectives[i]
		where := fmt.Sprintf("objectives[%d]", i)
		if j, dup := seen[[2]string{o.Route, o.Model}]; dup {
			errs = append(errs, fmt.Errorf("%s: route %q and model %q already used by objectives[%d]", where, o.Route, o.Model, j))
		} else {
			seen[[2]string{o.Route, o.Model}] = i
		}
		errs = append(errs, o.validate(where)...)
	}
	return errors.Join(errs...)
}

func fraction(v float64) bool { return v > 0 && v < 1 && !math.IsNaN(v) }

func (o *SLOObjective) validate(where string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", where, field, fmt.Sprintf(format, args...)))
	}
	switch {
	case o.Availability != 0 && o.ErrorRate != 0:
		bad("availability", "set either availability or errorRate, not both")
	case o.Availability == 0 && o.ErrorRate == 0:
		bad("availability", "one of availability or errorRate is required")
	case o.Availability != 0 && !fraction(o.Availability):
		bad("availability", "must be between 0 and 1 exclusive, got %v", o.Availability)
	case o.ErrorRate != 0 && !fraction(o.ErrorRate):
		bad("errorRate", "must be between 0 and 1 exclusive, got %v", o.ErrorRate)
	}
	for i, l := range o.Latency {
		if !(l.Percentile > 0 && l.Percentile < 100) {
			bad(fmt.Sprintf("latency[%d].percentile", i), "must be between 0 and 100 exclusive, got %v", l.Percentile)
		}
		if l.ThresholdMs == 0 {
			bad(fmt.Sprintf("latency[%d].thresholdMs", i), "must be positive")
		}
	}
	if len(o.Latency) > 8 {
		bad("latency", "at most 8 targets, got %d", len(o.Latency))
	}
	if o.EffectiveShortWindowSeconds() >= o.EffectiveLongWindowSeconds() {
		bad("shortWindowSeconds", "%d must be shorter than the long window (%d)",
			o.EffectiveShortWindowSeconds(), o.EffectiveLongWindowSeconds())
	}
	if o.EffectiveShortWindowSeconds() < DefaultBuckets {
		bad("shortWindowSeconds", "must be at least %d", DefaultBuckets)
	}
	if o.LongWindowSeconds > 30*86400 {
		bad("longWindowSeconds", "at most 30 days (%d), got %d", 30*86400, o.LongWindowSeconds)
	}
	for field, v := range map[string]float64{"shortBurnThreshold": o.ShortBurnThreshold, "longBurnThreshold": o.LongBurnThreshold} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			bad(field, "must be positive, got %v", v)
		}
	}
	if h := o.BudgetHeader; h != "" && (strings.ToLower(h) != h || strings.ContainsAny(h, " :\t\r\n")) {
		bad("budgetHeader", "must be a lower-case header name without spaces or colons, got %q", h)
	}
	return errs
}

// ErrorBudget is the allowed fraction of failed requests.
func (o *SLOObjective) ErrorBudget() float64 {
	if o.ErrorRate != 0 {
		return o.ErrorRate
	}
	return 1 - o.Availability
}

// EffectiveShortWindowSeconds applies the default.
func (o *SLOObjective) EffectiveShortWindowSeconds() uint32 {
	if o.ShortWindowSeconds == 0 {
		return DefaultShortWindowSeconds
	}
	return o.ShortWindowSeconds
}

// EffectiveLongWindowSeconds applies the default.
func (o *SLOObjective) EffectiveLongWindowSeconds() uint32 {
	if o.LongWindowSeconds == 0 {
		return DefaultLongWindowSeconds
	}
	return o.LongWindowSeconds
}

// EffectiveShortBurnThreshold applies the default.
func (o *SLOObjective) EffectiveShortBurnThreshold() float64 {
	if o.ShortBurnThreshold == 0 {
		return DefaultShortBurnThreshold
	}
	return o.ShortBurnThreshold
}

// EffectiveLongBurnThreshold applies the default.
func (o *SLOObjective) EffectiveLongBurnThreshold() float64 {
	if o.LongBurnThreshold == 0 {
		return DefaultLongBurnThreshold
	}
	return o.LongBurnThreshold
}

// BucketSeconds is the width of one window bucket: the short window cut
// into DefaultBuckets.
func (o *SLOObjective) BucketSeconds() uint32 {
	return max(1, o.EffectiveShortWindowSeconds()/DefaultBuckets)
}

// EffectiveEvaluateMs applies the default.
func (s *SLO) EffectiveEvaluateMs() uint32 {
	if s.EvaluateMs == 0 {
		return DefaultEvaluateMs
	}
	return s.EvaluateMs
}

// Match returns the first objective for route and model, or nil.
func (s *SLO) Match(route, model string) *SLOObjective {
	for i := range s.Objectives {
		o := &s.Objectives[i]
		if (o.Route == "" || o.Route == route) && (o.Model == "" || o.Model == model) {
			return o
		}
	}
	return nil
}
