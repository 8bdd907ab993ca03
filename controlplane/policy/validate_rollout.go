package policy

import "time"

// minStepInterval is the shortest rollout step and adaptive interval: a
// shorter one judges on a scrape or two, which is noise.
const minStepInterval = Duration(time.Second)

// rollout checks the route's own rollout settings (v.local) and those that
// read its defaulted split and shadow (v.cross).
func (v *validator) rollout(sp *RouteSpec) {
	ro := sp.Rollout
	if v.local {
		if ro.Version == "" {
			v.bad("spec.rollout.version", "the version to promote is required")
		}
		for i, s := range ro.Steps {
			switch {
			case s == 0 || s > 100:
				v.badAt(elem("spec.rollout.steps", i), "step %d is outside 1..100", s)
			case i > 0 && s <= ro.Steps[i-1]:
				v.badAt(elem("spec.rollout.steps", i), "step %d is not above the step before it (%d)", s, ro.Steps[i-1])
			}
		}
		if n := len(ro.Steps); n > 0 && ro.Steps[n-1] != 100 {
			v.bad("spec.rollout.steps", "the last step is %d: a rollout ends at 100", ro.Steps[n-1])
		}
		if ro.StepInterval < minStepInterval {
			v.bad("spec.rollout.stepInterval", "step interval %v is shorter than %v", ro.StepInterval, minStepInterval)
		}
		v.analysis(sp)
	}
	if !v.cross {
		return
	}
	if len(sp.Split) == 0 {
		v.bad("spec.rollout", "a rollout needs a split naming the stable version")
		return
	}
	stable := -1
	others := 0
	for i, d := range sp.Split {
		if d.Version != ro.Version {
			stable = i
			others++
		}
	}
	if others != 1 {
		v.bad("spec.split", "a rollout needs exactly one destination besides version %q (the stable version), found %d", ro.Version, others)
		return
	}
	st := sp.Split[stable]
	for i, d := range sp.Split {
		if i != stable && d.Service != st.Service {
			v.badAt(elem("spec.split", i), "the version promoted must be of the stable version's service %q", st.Service)
		}
	}
	if ro.Version != "" {
		v.serviceRef(pathOf("spec.rollout"), st.Service, ro.Version)
	}
	if ro.Analysis.MinAgreement != 0 && sp.Shadow != nil && sp.Shadow.Compare && sp.Shadow.Version != ro.Version {
		v.bad("spec.rollout.analysis.minAgreement", "agreement is measured on the compared shadow, version %q, not on %q", sp.Shadow.Version, ro.Version)
	}
}

// analysis checks the thresholds, defaulted from the route's SLO.
func (v *validator) analysis(sp *RouteSpec) {
	a := &sp.Rollout.Analysis
	if !(a.MaxErrorRate > 0 && a.MaxErrorRate < 100) {
		v.bad("spec.rollout.analysis.maxErrorRate", "%v is outside (0, 100): a percentage such as 1", a.MaxErrorRate)
	}
	seen := map[float64]bool{}
	for i, l := range a.Latency {
		f := elem("spec.rollout.analysis.latency", i)
		if !(l.Percentile > 0 && l.Percentile < 100) {
			v.badAt(f.dot("percentile"), "%v is outside (0, 100)", l.Percentile)
		} else if seen[l.Percentile] {
			v.badAt(f.dot("percentile"), "percentile %v given twice", l.Percentile)
		}
		seen[l.Percentile] = true
		if l.Threshold <= 0 {
			v.badAt(f.dot("threshold"), "a positive threshold such as 250ms is required")
		}
	}
	for _, b := range []struct {
		field string
		rate  float64
	}{{"spec.rollout.analysis.fastBurnRate", a.FastBurnRate}, {"spec.rollout.analysis.slowBurnRate", a.SlowBurnRate}} {
		switch {
		case b.rate < 0:
			v.bad(b.field, "burn rate %v must be positive", b.rate)
		case b.rate > 0 && ErrorBudget(sp.SLO) == 0:
			v.bad(b.field, "a burn rate needs an error budget: give the route's slo availability or errorRate")
		}
	}
	if a.FastBurnRate > 0 && a.FastBurnRate < a.SlowBurnRate {
		v.bad("spec.rollout.analysis.fastBurnRate", "fast burn rate %v is below the slow one %v", a.FastBurnRate, a.SlowBurnRate)
	}
	if m := a.MinAgreement; m != 0 {
		if !(m > 0 && m <= 100) {
			v.bad("spec.rollout.analysis.minAgreement", "%v is outside (0, 100]", m)
		}
		if sp.Shadow == nil || !sp.Shadow.Compare {
			v.bad("spec.rollout.analysis.minAgreement", "agreement needs spec.shadow with compare: true on the version promoted")
		}
	}
}

// adaptive checks an ensemble's adaptive weights.
func (v *validator) adaptive(e *Ensemble) {
	if e.Weights != WeightsAdaptive {
		if e.Adaptive != nil {
			v.bad("spec.ensemble.adaptive", "adaptive settings need weights: adaptive")
		}
		return
	}
	if e.Strategy != StrategyWeightedMean && e.Strategy != StrategyWeightedVote {
		v.bad("spec.ensemble.weights", "weights: adaptive needs strategy weighted_mean or weighted_vote, not %q", e.Strategy)
	}
	a := e.Adaptive
	if !(a.MinWeight > 0 && a.MinWeight < a.MaxWeight) {
		v.bad("spec.ensemble.adaptive.minWeight", "minWeight %v must be positive and below maxWeight %v", a.MinWeight, a.MaxWeight)
	}
	if a.Interval < minStepInterval {
		v.bad("spec.ensemble.adaptive.interval", "interval %v is shorter than %v", a.Interval, minStepInterval)
	}
	if !(a.Smoothing > 0 && a.Smoothing <= 1) {
		v.bad("spec.ensemble.adaptive.smoothing", "%v is outside (0, 1]", a.Smoothing)
	}
	for i, m := range e.Members {
		if m.Weight < a.MinWeight || m.Weight > a.MaxWeight {
			v.badAt(elem("spec.ensemble.members", i).dot("weight"), "weight %v is outside the adaptive bounds [%v, %v]", m.Weight, a.MinWeight, a.MaxWeight)
		}
	}
}

// ErrorBudget is the share of requests the route's SLO allows to fail (its
// errorRate, or 100 - availability, as a fraction), or 0 without one: the
// denominator of a burn rate.
func ErrorBudget(s *SLO) float64 {
	switch {
	case s == nil:
		return 0
	case s.ErrorRate > 0:
		return s.ErrorRate / 100
	case s.Availability > 0:
		return 1 - s.Availability/100
	}
	return 0
}
