package closedloop

import (
	"math"
	"strconv"

	"github.com/maestro-ml/maestro/controlplane/adaptive"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/rollout"
)

// Status is what /debug/status, `maestro status` and `validate --output`
// show of the closed loop: every route's split as the policy writes it and
// as it is served, the rollouts, and the ensembles' member weights.
type Status struct {
	Routes   []RouteStatus   `json:"routes"`
	Rollouts []rollout.State `json:"rollouts,omitempty"`
	// Leader reports whether this replica drives the rollouts; Holder
	// names the one that does.
	Leader bool   `json:"leader"`
	Holder string `json:"holder,omitempty"`
	// Notes say why something is not driven or failed last time.
	Notes []string `json:"notes,omitempty"`
}

// RouteStatus is one policy route.
type RouteStatus struct {
	Name    string         `json:"name"`
	Split   []SplitWeight  `json:"split,omitempty"`
	Members []MemberWeight `json:"members,omitempty"`
	// Adaptive says the members' weights are the tuner's
	// (ensemble.weights: adaptive), not the policy's.
	Adaptive bool `json:"adaptive,omitempty"`
	// Rollout is the rollout's phase and step, e.g. "progressing step
	// 2/4", or empty.
	Rollout string `json:"rollout,omitempty"`
}

// SplitWeight is one destination of a route's split.
type SplitWeight struct {
	Service   string `json:"service"`
	Version   string `json:"version"`
	Policy    uint32 `json:"policy"`
	Effective uint32 `json:"effective"`
}

// MemberWeight is one ensemble member.
type MemberWeight struct {
	Member    string  `json:"member"`
	Policy    float64 `json:"policy"`
	Effective float64 `json:"effective"`
	// Quality is the smoothed measured quality, absent before the first
	// measurement.
	Quality *float64 `json:"quality,omitempty"`
}

// Status describes pm as the loop serves it; a nil pm (nothing loaded yet)
// shows no routes.
func (l *Loop) Status(pm *policy.Mesh) Status {
	var rv *rollout.View
	if l.ctrl != nil {
		rv = l.ctrl.View()
	}
	st := Describe(pm, rv, l.tuner.View())
	if l.undrive != "" && hasRollouts(pm) {
		st.Notes = append(st.Notes, l.undrive)
	}
	return st
}

// Describe is the status of pm with the rollout view rv and the adaptive
// view av applied, either of which may be nil.
func Describe(pm *policy.Mesh, rv *rollout.View, av *adaptive.View) Status {
	st := Status{Routes: []RouteStatus{}}
	if pm == nil {
		return st
	}
	eff := pm
	phases := map[string]string{}
	if rv != nil {
		eff = rv.Overlay.Apply(eff)
		st.Rollouts, st.Leader, st.Holder = rv.Rollouts, rv.Leader, rv.Holder
		if rv.Error != "" {
			st.Notes = append(st.Notes, "rollout controller: "+rv.Error)
		}
		for _, s := range rv.Rollouts {
			phases[s.Route] = s.Phase
			if s.Phase == rollout.PhaseProgressing {
				phases[s.Route] += " step " + itoa(s.Step+1) + "/" + itoa(len(s.Steps))
			}
		}
	}
	quality := map[string]float64{}
	if av != nil {
		eff = av.Overlay.Apply(eff)
		for route, ms := range av.Routes {
			for _, m := range ms {
				quality[route+"\x00"+m.Member] = m.Quality
			}
		}
	}
	for i, r := range pm.Routes {
		e := eff.Routes[i] // Apply keeps the order of routes
		rs := RouteStatus{Name: r.Metadata.Name, Rollout: phases[r.Metadata.Name]}
		for _, d := range r.Spec.Split {
			rs.Split = append(rs.Split, SplitWeight{Service: d.Service, Version: d.Version, Policy: d.Weight})
		}
		for _, d := range e.Spec.Split {
			found := false
			for j := range rs.Split {
				if rs.Split[j].Service == d.Service && rs.Split[j].Version == d.Version {
					rs.Split[j].Effective, found = d.Weight, true
				}
			}
			if !found {
				rs.Split = append(rs.Split, SplitWeight{Service: d.Service, Version: d.Version, Effective: d.Weight})
			}
		}
		if r.Spec.Ensemble != nil && e.Spec.Ensemble != nil {
			rs.Adaptive = r.Spec.Ensemble.Weights == policy.WeightsAdaptive
			for j, m := range r.Spec.Ensemble.Members {
				mw := MemberWeight{Member: adaptive.MemberName(m), Policy: m.Weight, Effective: e.Spec.Ensemble.Members[j].Weight}
				if q, ok := quality[r.Metadata.Name+"\x00"+mw.Member]; ok && q >= 0 && !math.IsNaN(q) {
					mw.Quality = &q
				}
				rs.Members = append(rs.Members, mw)
			}
		}
		st.Routes = append(st.Routes, rs)
	}
	return st
}

func itoa(n int) string { return strconv.Itoa(n) }
