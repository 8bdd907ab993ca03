package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

func TestJudge(t *testing.T) {
	base := criteria{
		analysis: policy.RolloutAnalysis{
			MaxErrorRate: 1,
			Latency:      []policy.LatencyObjective{{Percentile: 99, Threshold: policy.Duration(250 * time.Millisecond)}},
			FastBurnRate: 14.4, SlowBurnRate: 6,
		},
		minRequests: 100,
		budget:      0.001, // availability 99.9
	}
	lowFast := base
	lowFast.analysis.FastBurnRate, lowFast.analysis.SlowBurnRate = 5, 5
	agreement := base
	agreement.analysis.MinAgreement = 95
	fast := 100 * time.Millisecond
	for _, c := range []struct {
		name       string
		crit       criteria
		m          measurement
		total      [2]float64 // rollout requests, errors
		want       string
		reason     string
		wantNumber [2]string
	}{
		{name: "too few requests", crit: base, m: measurement{requests: 99}, want: DecisionHold, reason: "too few requests: 99 of 100"},
		{name: "errors doom the step early", crit: base, m: measurement{requests: 20, errors: 2}, want: DecisionRollback, reason: "2 errors already exceed 1% of the 100 requests"},
		{name: "error rate", crit: base, m: measurement{requests: 200, errors: 3, latency: []time.Duration{fast}}, want: DecisionRollback, reason: "error rate 1.5% is above 1%", wantNumber: [2]string{"error_rate_pct", "1.5"}},
		{name: "latency", crit: base, m: measurement{requests: 200, latency: []time.Duration{300 * time.Millisecond}}, want: DecisionRollback, reason: "p99 latency 300ms is above 250ms", wantNumber: [2]string{"p99", "300ms"}},
		{name: "fast burn", crit: lowFast, m: measurement{requests: 1000, errors: 9, latency: []time.Duration{fast}}, total: [2]float64{1000, 9}, want: DecisionRollback, reason: "burn rate 9 over the step is above 5", wantNumber: [2]string{"fast_burn_rate", "9"}},
		{name: "slow burn", crit: base, m: measurement{requests: 1000, errors: 5, latency: []time.Duration{fast}}, total: [2]float64{2000, 14}, want: DecisionRollback, reason: "burn rate 7 over the rollout is above 6", wantNumber: [2]string{"slow_burn_rate", "7"}},
		{name: "agreement unknown", crit: agreement, m: measurement{requests: 1000, latency: []time.Duration{fast}}, total: [2]float64{1000, 0}, want: DecisionHold, reason: "no shadow rows compared"},
		{name: "agreement low", crit: agreement, m: measurement{requests: 1000, latency: []time.Duration{fast}, agree: 90, disagree: 10}, total: [2]float64{1000, 0}, want: DecisionRollback, reason: "agreement 90% is below 95%", wantNumber: [2]string{"agreement_pct", "90"}},
		{name: "pass", crit: agreement, m: measurement{requests: 1000, latency: []time.Duration{fast}, agree: 99, disagree: 1}, total: [2]float64{1000, 0}, want: DecisionAdvance, reason: "every threshold met", wantNumber: [2]string{"p99", "100ms"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := c.crit.judge(c.m, c.total[0], c.total[1])
			if v.decision != c.want || !strings.Contains(v.reason, c.reason) {
				t.Errorf("got %s %q, want %s %q", v.decision, v.reason, c.want, c.reason)
			}
			if k := c.wantNumber[0]; k != "" && v.numbers[k] != c.wantNumber[1] {
				t.Errorf("numbers[%s] = %q, want %q (all: %v)", k, v.numbers[k], c.wantNumber[1], v.numbers)
			}
			if v.numbers["requests"] == "" || v.numbers["min_requests"] != "100" {
				t.Errorf("the counts that decided are missing: %v", v.numbers)
			}
		})
	}
}
