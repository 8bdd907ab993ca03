package policy

import (
	"slices"
	"testing"
	"time"
)

// TestRolloutDefaults checks that a bare rollout takes its pace from the
// defaults and its thresholds from the route's SLO.
func TestRolloutDefaults(t *testing.T) {
	for _, c := range []struct {
		name, spec         string
		wantErrRate        float64
		wantFast, wantSlow float64
		wantLatency        int
		wantSteps          []uint32
		wantInterval       time.Duration
		wantMinRequests    uint32
	}{
		{
			name:        "no slo",
			spec:        "{service: fraud, split: [{version: v1, weight: 100}], rollout: {version: v2}}",
			wantErrRate: DefaultMaxErrorRate, wantSteps: DefaultRolloutSteps(), wantInterval: time.Minute, wantMinRequests: DefaultMinRequests,
		},
		{
			name:        "availability slo",
			spec:        "{service: fraud, split: [{version: v1, weight: 100}], slo: {availability: 99.9, latency: [{percentile: 99, threshold: 250ms}]}, rollout: {version: v2, steps: [10, 100], stepInterval: 30s, minRequests: 20}}",
			wantErrRate: 0.1, wantFast: 14.4, wantSlow: 6, wantLatency: 1, wantSteps: []uint32{10, 100}, wantInterval: 30 * time.Second, wantMinRequests: 20,
		},
		{
			name:        "error rate slo, lowered fast limit",
			spec:        "{service: fraud, split: [{version: v1, weight: 90}, {version: v2, weight: 10}], slo: {errorRate: 2}, rollout: {version: v2, analysis: {fastBurnRate: 3}}}",
			wantErrRate: 2, wantFast: 3, wantSlow: 3, wantSteps: DefaultRolloutSteps(), wantInterval: time.Minute, wantMinRequests: DefaultMinRequests,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := Parse("p.yaml", []byte(base+route("r", c.spec)))
			if err != nil {
				t.Fatal(err)
			}
			ro := m.Route("r").Spec.Rollout
			a := ro.Analysis
			if a.MaxErrorRate != c.wantErrRate || a.FastBurnRate != c.wantFast || a.SlowBurnRate != c.wantSlow || len(a.Latency) != c.wantLatency {
				t.Errorf("analysis = %+v, want error rate %v, burn %v/%v, %d latency objectives", a, c.wantErrRate, c.wantFast, c.wantSlow, c.wantLatency)
			}
			if !slices.Equal(ro.Steps, c.wantSteps) || ro.StepInterval.D() != c.wantInterval || ro.MinRequests != c.wantMinRequests {
				t.Errorf("rollout = %+v, want steps %v every %v, %d requests", ro, c.wantSteps, c.wantInterval, c.wantMinRequests)
			}
		})
	}
}

func TestAdaptiveDefaults(t *testing.T) {
	m, err := Parse("p.yaml", []byte(base+route("r", "{service: fraud, match: {model: m}, ensemble: {strategy: weighted_mean, weights: adaptive, members: [{version: v1}, {version: v2, weight: 0.5}]}}")))
	if err != nil {
		t.Fatal(err)
	}
	e := m.Route("r").Spec.Ensemble
	want := Adaptive{MinWeight: DefaultAdaptiveMin, MaxWeight: DefaultAdaptiveMax, Interval: DefaultAdaptiveEvery, Smoothing: DefaultSmoothing}
	if e.Adaptive == nil || *e.Adaptive != want {
		t.Errorf("adaptive = %+v, want %+v", e.Adaptive, want)
	}
	m, err = Parse("p.yaml", []byte(base+route("r", "{service: fraud, match: {model: m}, ensemble: {members: [{version: v1}, {version: v2}]}}")))
	if err != nil {
		t.Fatal(err)
	}
	if e := m.Route("r").Spec.Ensemble; e.Weights != WeightsStatic || e.Adaptive != nil {
		t.Errorf("static ensemble got weights %q, adaptive %+v", e.Weights, e.Adaptive)
	}
}
