package adaptive

import (
	"slices"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// Overlay is the member weights of each adaptive ensemble, in the
// policy's member order. It is a value: the Tuner hands out a new one at
// every Evaluate.
type Overlay map[string][]float64

// Apply returns m with the overlay's member weights in place of the
// policy's, or m itself when they change nothing. m is not modified.
func (o Overlay) Apply(m *policy.Mesh) *policy.Mesh {
	if len(o) == 0 || m == nil {
		return m
	}
	var out *policy.Mesh
	for i, r := range m.Routes {
		ws, ok := o[r.Metadata.Name]
		e := r.Spec.Ensemble
		if !ok || e == nil || len(ws) != len(e.Members) || sameWeights(e.Members, ws) {
			continue
		}
		if out == nil {
			c := *m // keeps the name index: the order of Routes is unchanged
			c.Routes = slices.Clone(m.Routes)
			out = &c
		}
		ec := *e
		ec.Members = slices.Clone(e.Members)
		for j := range ec.Members {
			ec.Members[j].Weight = ws[j]
		}
		rc := *r
		rc.Spec.Ensemble = &ec
		out.Routes[i] = &rc
	}
	if out == nil {
		return m
	}
	return out
}

func sameWeights(ms []policy.Member, ws []float64) bool {
	for i, m := range ms {
		if m.Weight != ws[i] {
			return false
		}
	}
	return true
}
