package rollout

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// Decisions, as audit events name them (with the prefix "rollout_").
const (
	DecisionStart    = "start"
	DecisionRestart  = "restart"
	DecisionAdvance  = "advance"
	DecisionHold     = "hold"
	DecisionRollback = "rollback"
	DecisionPromote  = "promote"
	DecisionRemove   = "remove"
)

// measurement is what the metric source said of the version over the
// current step.
type measurement struct {
	window   time.Duration
	requests float64
	errors   float64
	// latency holds the measured percentile of each objective, in order;
	// filled only once the step has enough requests.
	latency []time.Duration
	// agree and disagree are compared shadow rows, when MinAgreement is
	// set.
	agree, disagree float64
}

// verdict is a decision, its reason, and the numbers that decided it.
type verdict struct {
	decision string
	reason   string
	numbers  map[string]string
}

// criteria are what a step is judged against.
type criteria struct {
	analysis    policy.RolloutAnalysis
	minRequests uint32
	// budget is the SLO's error budget as a fraction, 0 when there is
	// none (then burn rates are not judged).
	budget float64
}

// enough reports whether the step has served the requests it must before
// it is judged, and, when it has not, whether its errors alone already
// breach the error rate: at minRequests the rate could not be below
// errors/minRequests.
func (c criteria) enough(m measurement) (judge, doomed bool) {
	if m.requests >= float64(c.minRequests) {
		return true, false
	}
	return false, m.errors*100/float64(c.minRequests) > c.analysis.MaxErrorRate
}

// judge decides a step from m. total holds the requests and errors of the
// whole rollout so far, this step included. The rules, in order: too few
// requests holds (unless the errors already doom the step); then any
// breach (error rate, a latency percentile, the fast burn rate over the
// step, the slow burn rate over the rollout, shadow agreement) rolls back;
// otherwise the step passes.
func (c criteria) judge(m measurement, totalReq, totalErr float64) verdict {
	a := c.analysis
	n := map[string]string{
		"window":             m.window.String(),
		"requests":           num(m.requests),
		"errors":             num(m.errors),
		"min_requests":       strconv.FormatUint(uint64(c.minRequests), 10),
		"max_error_rate_pct": num(a.MaxErrorRate),
	}
	rate := 0.0
	if m.requests > 0 {
		rate = m.errors * 100 / m.requests
		n["error_rate_pct"] = num(rate)
	}
	judge, doomed := c.enough(m)
	if doomed {
		return verdict{DecisionRollback, fmt.Sprintf("%s errors already exceed %s%% of the %d requests the step needs", num(m.errors), num(a.MaxErrorRate), c.minRequests), n}
	}
	if !judge {
		return verdict{DecisionHold, fmt.Sprintf("too few requests: %s of %d", num(m.requests), c.minRequests), n}
	}
	if rate > a.MaxErrorRate {
		return verdict{DecisionRollback, fmt.Sprintf("error rate %s%% is above %s%%", num(rate), num(a.MaxErrorRate)), n}
	}
	for i, l := range a.Latency {
		name := "p" + num(l.Percentile)
		n[name] = m.latency[i].String()
		n[name+"_threshold"] = l.Threshold.String()
		if m.latency[i] > l.Threshold.D() {
			return verdict{DecisionRollback, fmt.Sprintf("%s latency %v is above %v", name, m.latency[i], l.Threshold), n}
		}
	}
	if c.budget > 0 {
		fast := m.errors / m.requests / c.budget
		slow := 0.0
		if totalReq > 0 {
			slow = totalErr / totalReq / c.budget
		}
		n["fast_burn_rate"], n["max_fast_burn_rate"] = num(fast), num(a.FastBurnRate)
		n["slow_burn_rate"], n["max_slow_burn_rate"] = num(slow), num(a.SlowBurnRate)
		if a.FastBurnRate > 0 && fast > a.FastBurnRate {
			return verdict{DecisionRollback, fmt.Sprintf("burn rate %s over the step is above %s", num(fast), num(a.FastBurnRate)), n}
		}
		if a.SlowBurnRate > 0 && slow > a.SlowBurnRate {
			return verdict{DecisionRollback, fmt.Sprintf("burn rate %s over the rollout is above %s", num(slow), num(a.SlowBurnRate)), n}
		}
	}
	if a.MinAgreement > 0 {
		rows := m.agree + m.disagree
		n["compared_rows"] = num(rows)
		if rows == 0 {
			return verdict{DecisionHold, "no shadow rows compared: agreement unknown", n}
		}
		agreement := m.agree * 100 / rows
		n["agreement_pct"], n["min_agreement_pct"] = num(agreement), num(a.MinAgreement)
		if agreement < a.MinAgreement {
			return verdict{DecisionRollback, fmt.Sprintf("agreement %s%% is below %s%%", num(agreement), num(a.MinAgreement)), n}
		}
	}
	return verdict{DecisionAdvance, "every threshold met", n}
}

// num formats a number for reasons and audit details: short, exact for
// counts.
func num(f float64) string {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return strconv.FormatFloat(math.Round(f*1e4)/1e4, 'g', -1, 64)
}
