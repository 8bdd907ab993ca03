package slo

import (
	"math"
	"strconv"
	"strings"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// FromPolicy returns the objectives of every route of mesh that has an slo
// section, in route order: one for availability, one for the error rate,
// and one per latency target, each named after its route.
func FromPolicy(mesh *policy.Mesh) []Objective {
	var out []Objective
	for _, r := range mesh.Routes {
		s := r.Spec.SLO
		if s == nil {
			continue
		}
		name := r.Metadata.Name
		base := Objective{Route: name, Window: s.Window.D()}
		if s.Availability != 0 {
			o := base
			o.Name, o.Kind, o.Target = name+"-availability", Availability, fraction(s.Availability)
			out = append(out, o)
		}
		if s.ErrorRate != 0 {
			o := base
			o.Name, o.Kind, o.Target = name+"-error-rate", ErrorRate, fraction(100-s.ErrorRate)
			out = append(out, o)
		}
		for _, l := range s.Latency {
			o := base
			o.Kind, o.Target, o.Threshold = Latency, fraction(l.Percentile), l.Threshold.D()
			p := strings.ReplaceAll(strconv.FormatFloat(l.Percentile, 'f', -1, 64), ".", "_")
			o.Name = name + "-latency-p" + p + "-" + strconv.FormatInt(l.Threshold.D().Milliseconds(), 10) + "ms"
			out = append(out, o)
		}
	}
	return out
}

// fraction turns a policy percentage into a fraction, rounded so that 99.9
// becomes 0.999 rather than its binary neighbour.
func fraction(percent float64) float64 { return math.Round(percent*1e7) / 1e9 }
