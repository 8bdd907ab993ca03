package rollout

import (
	"slices"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// Overlay is what the rollouts change in the mesh: for each route under a
// rollout, the split to serve instead of the policy's (the stable and the
// promoted version with the controller's weights, summing to 100). It is
// a value: the controller hands out a new one when anything changes, so
// readers may keep it.
type Overlay map[string][]policy.Destination

// Apply returns m with the overlay's splits in place of the routes' own,
// or m itself when the overlay changes none of them. m is not modified: the
// routes changed are copies, and the rest are shared, as Meshes share
// documents (see policy.Mesh).
func (o Overlay) Apply(m *policy.Mesh) *policy.Mesh {
	if len(o) == 0 || m == nil {
		return m
	}
	var out *policy.Mesh
	for i, r := range m.Routes {
		split, ok := o[r.Metadata.Name]
		if !ok || slices.Equal(split, r.Spec.Split) {
			continue
		}
		if out == nil {
			c := *m // keeps the name index: the order of Routes is unchanged
			c.Routes = slices.Clone(m.Routes)
			out = &c
		}
		rc := *r
		rc.Spec.Split = slices.Clone(split)
		out.Routes[i] = &rc
	}
	if out == nil {
		return m
	}
	return out
}

// clone copies o deeply.
func (o Overlay) clone() Overlay {
	c := make(Overlay, len(o))
	for k, v := range o {
		c[k] = slices.Clone(v)
	}
	return c
}
