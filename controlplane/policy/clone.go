package policy

import "slices"

// Copies used by the Loader to place cached documents in a new Mesh. A
// Mesh is read-only for its users, so successive Meshes share what the
// Loader decoded: each copy is the document's top-level struct alone, which
// holds the header that differs from Mesh to Mesh (Source, file, shift: a
// document moves when the ones before it change) and the spec's scalars,
// while the spec's slices, maps and pointers stay the cache's. What the
// package itself fills in after placing a document (the defaults that read
// other documents, endpoints files) replaces those references with copies
// before writing (copy-on-write, see applyDefaults and loadEndpoints).
// The structs are taken from one slab per kind sized for the load rather
// than one allocation each. TestClonesCopyHeaders and
// TestLoaderLeavesEarlierMeshesUnchanged check the rule.

// slabSizes counts the values of each slab a set of documents needs.
type slabSizes struct {
	services, routes int
}

func (n *slabSizes) add(o slabSizes) {
	n.services += o.services
	n.routes += o.routes
}

// needOf is what copying res takes from the slabs.
func needOf(res hasDoc) slabSizes {
	switch res.(type) {
	case *Service:
		return slabSizes{services: 1}
	case *Route:
		return slabSizes{routes: 1}
	}
	return slabSizes{}
}

// grow makes room in m's slices for the documents of n, so merging them
// appends without copying the slices again.
func (m *Mesh) grow(n slabSizes) {
	m.Services = slices.Grow(m.Services, n.services)
	m.Routes = slices.Grow(m.Routes, n.routes)
}

// slabs hands out the memory of one load's copies. A Mesh keeps its slabs
// alive as a whole; no two Meshes share one.
type slabs struct {
	services slab[Service]
	routes   slab[Route]
}

func newSlabs(n slabSizes) *slabs {
	return &slabs{
		services: slab[Service]{free: make([]Service, n.services)},
		routes:   slab[Route]{free: make([]Route, n.routes)},
	}
}

// slab is a run of values handed out in order; when it runs out (sizes are
// counted ahead, so only if a count was wrong) it allocates as usual.
type slab[T any] struct{ free []T }

// one returns a zero value's address.
func (s *slab[T]) one() *T {
	if len(s.free) == 0 {
		return new(T)
	}
	p := &s.free[0]
	s.free = s.free[1:]
	return p
}

func (r *MeshConfig) clone(*slabs) hasDoc {
	c := *r
	return &c
}

func (r *Service) clone(sl *slabs) hasDoc {
	c := sl.services.one()
	*c = *r
	return c
}

func (r *Route) clone(sl *slabs) hasDoc {
	c := sl.routes.one()
	*c = *r
	return c
}

func (r *Gateway) clone(*slabs) hasDoc {
	c := *r
	return &c
}

func (r *Sidecar) clone(*slabs) hasDoc {
	c := *r
	return &c
}

func (r *AuthorizationPolicy) clone(*slabs) hasDoc {
	c := *r
	return &c
}
