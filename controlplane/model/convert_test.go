package model_test

import (
	"slices"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// TestFanoutOfKeepsOrderOnlyWhereItMeansSomething: members are sorted by
// cluster (one canonical form, one hash) except where their order changes
// the answer: a sequence, stacking's per-member weights, and
// max_confidence's ties.
func TestFanoutOfKeepsOrderOnlyWhereItMeansSomething(t *testing.T) {
	t.Parallel()
	members := []policy.Member{{Service: "s", Version: "b"}, {Service: "s", Version: "a"}}
	given, sorted := []string{"s.b", "s.a"}, []string{"s.a", "s.b"}
	for name, tc := range map[string]struct {
		e    policy.Ensemble
		want []string
	}{
		"mean":           {policy.Ensemble{Strategy: policy.StrategyMean}, sorted},
		"weighted vote":  {policy.Ensemble{Strategy: policy.StrategyWeightedVote}, sorted},
		"max confidence": {policy.Ensemble{Strategy: policy.StrategyMaxConfidence}, given},
		"stacking":       {policy.Ensemble{Strategy: policy.StrategyStacking, Stacking: &policy.Stacking{Weights: []float64{1, 2}}}, given},
		"sequence":       {policy.Ensemble{Mode: policy.ModeSequence}, given},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := tc.e
			e.Members = slices.Clone(members)
			f := model.FanoutOf(&e, model.ClusterName)
			var got []string
			for _, m := range f.Members {
				got = append(got, m.Cluster)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("members %v, want %v", got, tc.want)
			}
			// Normalize agrees with the conversion: the form is canonical.
			a := model.RouteAction{Fanout: f}
			m := &model.Mesh{Groups: []model.NodeGroup{{Name: "g", Listeners: []model.Listener{{Name: "l",
				Routes: model.RouteConfig{VirtualHosts: []model.VirtualHost{{Name: "v", Routes: []model.Route{{Name: "r", Action: a}}}}}}}}}}
			m.Normalize()
			var after []string
			for _, mem := range m.Groups[0].Listeners[0].Routes.VirtualHosts[0].Routes[0].Action.Fanout.Members {
				after = append(after, mem.Cluster)
			}
			if !slices.Equal(after, tc.want) {
				t.Errorf("after Normalize: members %v, want %v", after, tc.want)
			}
		})
	}
	if model.FanoutOf(nil, model.ClusterName) != nil || model.SLOOf(nil) != nil || model.MirrorsOf(nil, model.ClusterName) != nil {
		t.Error("a route without the setting got one")
	}
}

func TestSLOOfIsCanonical(t *testing.T) {
	t.Parallel()
	s := &policy.SLO{Availability: 99.9, Latency: []policy.LatencyObjective{{Percentile: 99}, {Percentile: 50}},
		BurnWindows: []policy.BurnWindow{{Window: policy.Duration(3600e9)}, {Window: policy.Duration(300e9)}}}
	o := model.SLOOf(s)
	if o.Availability != 0.999 {
		t.Errorf("availability %v, want 0.999", o.Availability)
	}
	if o.Latency[0].Percentile != 50 || o.Windows[0].Duration != 300e9 {
		t.Errorf("not sorted: %+v", o)
	}
}
