package model

import (
	"cmp"
	"math"
	"slices"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// The conversions of a route's filter settings from policy to the IR. They
// are the only ones: the native translation (Build) and the Istio renderer
// both call them, each with its own cluster names, so the fanout and slo
// filters get the same configuration from either.

// ClusterOf names the cluster that serves version of service. The native
// control plane and the Istio renderer name clusters differently.
type ClusterOf func(service, version string) string

// MirrorsOf returns the mirrors of a route's shadow, nil without one.
func MirrorsOf(sh *policy.Shadow, cluster ClusterOf) []Mirror {
	if sh == nil {
		return nil
	}
	return []Mirror{{Cluster: cluster(sh.Service, sh.Version), Percent: sh.Percentage, Compare: sh.Compare, Model: sh.Model}}
}

// FanoutOf returns the fanout of an ensemble in canonical form (see
// normalizeFanout), nil without one.
func FanoutOf(e *policy.Ensemble, cluster ClusterOf) *Fanout {
	if e == nil {
		return nil
	}
	f := &Fanout{Strategy: e.Strategy, Quorum: e.Quorum, Timeout: e.Timeout.D(), Sequence: e.Mode == policy.ModeSequence}
	for _, mem := range e.Members {
		f.Members = append(f.Members, FanoutMember{Cluster: cluster(mem.Service, mem.Version), Model: mem.Model, Weight: mem.Weight})
	}
	if s := e.Stacking; s != nil {
		f.Stacking = &Stacking{Weights: slices.Clone(s.Weights), Bias: s.Bias}
	}
	normalizeFanout(f)
	return f
}

// SLOOf returns the objectives of a route's SLO in canonical form (see
// normalizeSLO), nil without one.
func SLOOf(s *policy.SLO) *SLO {
	if s == nil {
		return nil
	}
	o := &SLO{ErrorRate: fraction(s.ErrorRate), Availability: fraction(s.Availability), BudgetHeader: s.BudgetHeader}
	for _, l := range s.Latency {
		o.Latency = append(o.Latency, LatencyTarget{Percentile: l.Percentile, Threshold: l.Threshold.D()})
	}
	for _, w := range s.BurnWindows {
		o.Windows = append(o.Windows, BurnWindow{Duration: w.Window.D(), BurnRate: w.BurnRate})
	}
	normalizeSLO(o)
	return o
}

// KeepsMemberOrder reports whether the order of f's members carries
// meaning: a sequence feeds each into the next, stacking has one weight per
// member in order, and max_confidence breaks ties by member order. Only
// other fanouts have their members sorted.
func (f *Fanout) KeepsMemberOrder() bool {
	return f.Sequence || f.Stacking != nil || f.Strategy == policy.StrategyMaxConfidence
}

// normalizeFanout sorts f's members by cluster where their order carries
// no meaning.
func normalizeFanout(f *Fanout) {
	if !f.KeepsMemberOrder() {
		sortByName(f.Members, func(m *FanoutMember) string { return m.Cluster })
	}
}

// normalizeSLO sorts the latency targets by percentile and the burn
// windows by duration.
func normalizeSLO(s *SLO) {
	slices.SortStableFunc(s.Latency, func(x, y LatencyTarget) int { return cmp.Compare(x.Percentile, y.Percentile) })
	slices.SortStableFunc(s.Windows, func(x, y BurnWindow) int { return cmp.Compare(x.Duration, y.Duration) })
}

// fraction turns a policy percentage into the IR's [0, 1] share, rounded
// to 12 decimals so that 99.9 becomes 0.999 rather than 0.9990000000000001.
func fraction(percent float64) float64 {
	return math.Round(percent/100*1e12) / 1e12
}
