package filterconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Strategy names how the fanout filter combines its members' outputs.
type Strategy string

// Combination strategies. Scores are the values of the combined output
// tensor; a row's class is the argmax of its scores, or, for a single score
// per row, 1 when the score is at least the route's Threshold and 0 below.
const (
	// StrategyMean averages the scores element by element.
	StrategyMean Strategy = "mean"
	// StrategyWeightedMean averages the scores weighted by member Weight,
	// over the members that answered.
	StrategyWeightedMean Strategy = "weighted_mean"
	// StrategyMajorityVote answers each row's most voted class (ties go to
	// the lowest class).
	StrategyMajorityVote Strategy = "majority_vote"
	// StrategyWeightedVote is a majority vote where each member's vote
	// counts its Weight.
	StrategyWeightedVote Strategy = "weighted_vote"
	// StrategyMaxConfidence answers, per row, the scores of the member most
	// confident in its class (ties go to the earlier member).
	StrategyMaxConfidence Strategy = "max_confidence"
	// StrategyStacking feeds each member's single score per row into the
	// logistic meta-model of the route's Stacking and answers its
	// probability. Every member must answer.
	StrategyStacking Strategy = "stacking"
)

// Strategies lists the known strategies, for documentation and help text.
func Strategies() []Strategy {
	return []Strategy{
		StrategyMean, StrategyWeightedMean, StrategyMajorityVote,
		StrategyWeightedVote, StrategyMaxConfidence, StrategyStacking,
	}
}

// DefaultFanoutTimeoutMs bounds member callouts when a route sets none.
const DefaultFanoutTimeoutMs = 1000

// DefaultThreshold is the class boundary for single-score outputs.
const DefaultThreshold = 0.5

// Fanout is the fanout filter's plugin configuration: the settings of every
// route of the listener that uses the filter. Requests on other routes pass
// through untouched.
type Fanout struct {
	// Routes are the per-route settings; Route names are unique.
	Routes []FanoutRoute `json:"routes"`
	// ModelRouting, when set, makes the filter give gRPC requests without
	// the model header the header from their message, so that standard OIP
	// clients are routed by model.
	ModelRouting *ModelRouting `json:"modelRouting,omitempty"`
}

// FanoutRoute configures the filter for one Envoy route: an ensemble of
// Members called concurrently (or in order, with Sequence) and Shadows whose
// answers are compared with the route's own response.
type FanoutRoute struct {
	// Route is the Envoy route name the settings apply to (Envoy's
	// xds.route_name property). Empty applies to any route not named by
	// another entry.
	Route string `json:"route"`
	// Members are the models of the ensemble, or the steps of a sequence.
	// Empty for a route that only compares shadows.
	Members []FanoutMember `json:"members,omitempty"`
	// Strategy combines the members' outputs; empty means "mean". Unused
	// with Sequence.
	Strategy Strategy `json:"strategy,omitempty"`
	// Quorum is the least number of members that must answer; 0 means all.
	Quorum uint32 `json:"quorum,omitempty"`
	// TimeoutMs bounds every member callout in milliseconds; 0 means
	// DefaultFanoutTimeoutMs.
	TimeoutMs uint32 `json:"timeoutMs,omitempty"`
	// Output is the name of the output tensor to combine; empty takes each
	// member's first output.
	Output string `json:"output,omitempty"`
	// Threshold is the class boundary of single-score outputs, in [0, 1];
	// 0 means DefaultThreshold.
	Threshold float64 `json:"threshold,omitempty"`
	// Stacking is the meta-model of StrategyStacking.
	Stacking *Stacking `json:"stacking,omitempty"`
	// Sequence chains the members in order: each member's outputs become
	// the next member's inputs and the last member's answer is returned.
	Sequence bool `json:"sequence,omitempty"`
	// Primary is the member Cluster the route itself forwards gRPC requests
	// to. gRPC responses cannot come from the filter (Envoy turns a gRPC
	// local reply into trailers-only), so the request goes on to Primary and
	// its response body is rewritten with the combined result; the other
	// members are called out of band. Empty means the first member. With
	// Sequence, Primary must be the last member.
	Primary string `json:"primary,omitempty"`
	// Shadows receive a copy of the request; their outputs are compared with
	// the route's response and counted in metrics. They never delay or
	// change the response.
	Shadows []Shadow `json:"shadows,omitempty"`
	// Observe, when set, posts the members' answers to the control plane
	// for adaptive weights (observe.go).
	Observe *Observe `json:"observe,omitempty"`
}

// FanoutMember is one model the filter calls.
type FanoutMember struct {
	// Name labels the member in response headers, parameters and metrics;
	// empty uses Cluster. Labels are unique within a route.
	Name string `json:"name,omitempty"`
	// Cluster is the Envoy cluster the callout goes to.
	Cluster string `json:"cluster"`
	// Model is the model name asked of the member.
	Model string `json:"model"`
	// Version, when set, asks for that model version.
	Version string `json:"version,omitempty"`
	// Weight counts in weighted strategies; must be >= 0.
	Weight float64 `json:"weight,omitempty"`
	// Authority is the :authority of callouts; empty uses Cluster.
	Authority string `json:"authority,omitempty"`
	// Inputs renames, in a Sequence, the previous member's outputs into
	// this member's inputs (previous output name -> input name). Outputs not
	// named keep their names.
	Inputs map[string]string `json:"inputs,omitempty"`
}

// Stacking is a logistic meta-model over the members' scores:
// p = 1 / (1 + exp(-(Bias + sum(Weights[i] * score[i])))), one weight per
// member in Members order.
type Stacking struct {
	Weights []float64 `json:"weights"`
	Bias    float64   `json:"bias"`
}

// Shadow is a model that receives a copy of Percent of the route's requests
// for comparison.
type Shadow struct {
	// Name labels the shadow's metrics; empty uses Cluster.
	Name    string `json:"name,omitempty"`
	Cluster string `json:"cluster"`
	// Model is the model asked of the shadow; empty keeps the request's.
	Model     string `json:"model,omitempty"`
	Version   string `json:"version,omitempty"`
	Authority string `json:"authority,omitempty"`
	// Percent of requests copied, in [0, 100].
	Percent float64 `json:"percent"`
}

// Label is the member's name in headers, parameters and metrics.
func (m *FanoutMember) Label() string {
	if m.Name != "" {
		return m.Name
	}
	return m.Cluster
}

// Label is the shadow's name in metrics.
func (s *Shadow) Label() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Cluster
}

// ParseFanout decodes and validates a fanout plugin configuration. Unknown
// fields are errors, so a typo does not silently change behaviour.
//
// # Errors
//
// A JSON error names the byte offset; a validation error names each bad
// field's path.
func ParseFanout(data []byte) (*Fanout, error) {
	var f Fanout
	if err := parse("fanout config", data, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// parse decodes exactly one JSON object from data into v, strictly, and
// validates it; what prefixes every error.
func parse(what string, data []byte, v interface{ Validate() error }) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", what, jsonError(data, err))
	}
	if dec.More() {
		return fmt.Errorf("%s: trailing data after the JSON object", what)
	}
	if err := v.Validate(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// jsonError adds the line and column to JSON syntax and type errors.
func jsonError(data []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 || off > int64(len(data)) {
		return err
	}
	line, col := 1, 1
	for _, c := range data[:off] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return fmt.Errorf("line %d col %d: %w", line, col, err)
}

// Route returns the settings for the Envoy route named name: the entry with
// that Route, else the entry with an empty Route, else nil.
func (f *Fanout) Route(name string) *FanoutRoute {
	var fallback *FanoutRoute
	for i := range f.Routes {
		r := &f.Routes[i]
		if r.Route == name {
			return r
		}
		if r.Route == "" {
			fallback = r
		}
	}
	return fallback
}

// Validate checks the whole configuration and returns every problem found,
// joined, each prefixed with its field path.
func (f *Fanout) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i := range f.Routes {
		r := &f.Routes[i]
		where := fmt.Sprintf("routes[%d]", i)
		if seen[r.Route] {
			errs = append(errs, fmt.Errorf("%s.route: duplicate route %q", where, r.Route))
		}
		seen[r.Route] = true
		errs = append(errs, r.validate(where)...)
	}
	if f.ModelRouting != nil {
		errs = append(errs, f.ModelRouting.validate("modelRouting")...)
	}
	return errors.Join(errs...)
}

func (r *FanoutRoute) validate(where string) []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", where, field, fmt.Sprintf(format, args...)))
	}
	if len(r.Members) == 0 && len(r.Shadows) == 0 {
		add("members", "a route needs members or shadows")
	}
	weightSum := 0.0
	labels := map[string]bool{}
	for i, m := range r.Members {
		mw := fmt.Sprintf("members[%d]", i)
		if l := m.Label(); l != "" && labels[l] {
			add(mw+".name", "duplicate member label %q (set distinct names)", l)
		} else {
			labels[l] = true
		}
		if m.Cluster == "" {
			add(mw+".cluster", "must not be empty")
		}
		if m.Model == "" {
			add(mw+".model", "must not be empty")
		}
		if !finite(m.Weight) || m.Weight < 0 {
			add(mw+".weight", "must be a finite number >= 0, got %v", m.Weight)
		} else {
			weightSum += m.Weight
		}
		if len(m.Inputs) > 0 && (!r.Sequence || i == 0) {
			add(mw+".inputs", "only members after the first of a sequence take inputs from a previous member")
		}
		for from, to := range m.Inputs {
			if from == "" || to == "" {
				add(mw+".inputs", "names must not be empty (%q -> %q)", from, to)
			}
		}
	}
	if r.Sequence {
		if r.Strategy != "" {
			add("strategy", "a sequence combines nothing; leave strategy empty")
		}
		if r.Stacking != nil {
			add("stacking", "a sequence combines nothing; leave stacking empty")
		}
		if r.Quorum != 0 {
			add("quorum", "every step of a sequence must answer; leave quorum empty")
		}
		if n := len(r.Members); n > 0 && r.Primary != "" && r.Primary != r.Members[n-1].Cluster {
			add("primary", "%q must be the last member of a sequence (%q)", r.Primary, r.Members[n-1].Cluster)
		}
	} else {
		errs = append(errs, r.validateEnsemble(where, weightSum)...)
	}
	if r.Primary != "" && !r.hasMember(r.Primary) {
		add("primary", "%q is not a member cluster", r.Primary)
	}
	if !finite(r.Threshold) || r.Threshold < 0 || r.Threshold > 1 {
		add("threshold", "must be in [0, 1], got %v", r.Threshold)
	}
	if r.Observe != nil {
		errs = append(errs, r.Observe.validate(where+".observe", r)...)
	}
	shadowLabels := map[string]bool{}
	for i, s := range r.Shadows {
		sw := fmt.Sprintf("shadows[%d]", i)
		if l := s.Label(); l != "" && shadowLabels[l] {
			add(sw+".name", "duplicate shadow label %q (set distinct names)", l)
		} else {
			shadowLabels[l] = true
		}
		if s.Cluster == "" {
			add(sw+".cluster", "must not be empty")
		}
		if !finite(s.Percent) || s.Percent < 0 || s.Percent > 100 {
			add(sw+".percent", "must be in [0, 100], got %v", s.Percent)
		}
	}
	return errs
}

func (r *FanoutRoute) validateEnsemble(where string, weightSum float64) []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", where, field, fmt.Sprintf(format, args...)))
	}
	known := r.Strategy == ""
	for _, s := range Strategies() {
		known = known || r.Strategy == s
	}
	if !known {
		add("strategy", "unknown strategy %q (want one of %v)", r.Strategy, Strategies())
	}
	if int(r.Quorum) > len(r.Members) {
		add("quorum", "%d is more than the %d members", r.Quorum, len(r.Members))
	}
	if (r.Strategy == StrategyWeightedMean || r.Strategy == StrategyWeightedVote) && len(r.Members) > 0 && weightSum <= 0 {
		add("members", "strategy %q needs at least one positive weight", r.Strategy)
	}
	switch {
	case r.Strategy == StrategyStacking && r.Stacking == nil:
		add("stacking", "strategy %q needs a stacking meta-model", r.Strategy)
	case r.Strategy != StrategyStacking && r.Stacking != nil:
		add("stacking", "set only with strategy %q", StrategyStacking)
	case r.Stacking != nil:
		if len(r.Stacking.Weights) != len(r.Members) {
			add("stacking.weights", "%d weights for %d members", len(r.Stacking.Weights), len(r.Members))
		}
		for i, w := range r.Stacking.Weights {
			if !finite(w) {
				add(fmt.Sprintf("stacking.weights[%d]", i), "must be finite, got %v", w)
			}
		}
		if !finite(r.Stacking.Bias) {
			add("stacking.bias", "must be finite, got %v", r.Stacking.Bias)
		}
		if r.Quorum != 0 && int(r.Quorum) != len(r.Members) {
			add("quorum", "stacking needs every member's score; quorum %d is below the %d members", r.Quorum, len(r.Members))
		}
	}
	return errs
}

func (r *FanoutRoute) hasMember(cluster string) bool {
	for _, m := range r.Members {
		if m.Cluster == cluster {
			return true
		}
	}
	return false
}

// EffectiveQuorum is the number of answers the route needs.
func (r *FanoutRoute) EffectiveQuorum() int {
	if r.Quorum == 0 || r.Sequence {
		return len(r.Members)
	}
	return int(r.Quorum)
}

// EffectiveStrategy is Strategy, or StrategyMean when empty.
func (r *FanoutRoute) EffectiveStrategy() Strategy {
	if r.Strategy == "" {
		return StrategyMean
	}
	return r.Strategy
}

// EffectiveTimeoutMs is TimeoutMs, or DefaultFanoutTimeoutMs when 0.
func (r *FanoutRoute) EffectiveTimeoutMs() uint32 {
	if r.TimeoutMs == 0 {
		return DefaultFanoutTimeoutMs
	}
	return r.TimeoutMs
}

// EffectiveThreshold is Threshold, or DefaultThreshold when 0.
func (r *FanoutRoute) EffectiveThreshold() float64 {
	if r.Threshold == 0 {
		return DefaultThreshold
	}
	return r.Threshold
}

// PrimaryIndex is the index in Members of the member gRPC requests are
// forwarded to: Primary's, else the last member of a sequence, else 0.
// It returns -1 when there are no members.
func (r *FanoutRoute) PrimaryIndex() int {
	if len(r.Members) == 0 {
		return -1
	}
	for i, m := range r.Members {
		if r.Primary != "" && m.Cluster == r.Primary {
			return i
		}
	}
	if r.Sequence {
		return len(r.Members) - 1
	}
	return 0
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
