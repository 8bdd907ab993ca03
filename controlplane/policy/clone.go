package policy

import (
	"maps"
	"slices"
)

// Clones used by the Loader to copy cached documents out: written by hand
// because reflection made copying most of the cost of a reload, and taking
// the many small values of a large mesh (services, routes, versions,
// endpoints, destinations) from a few slabs sized for the load rather than
// one allocation each. TestClonesAreDeep fills every field and checks that
// no memory is shared.

// slabSizes counts the values of each slab a set of documents needs.
type slabSizes struct {
	services, routes, versions, endpoints, dests int
}

func (n *slabSizes) add(o slabSizes) {
	n.services += o.services
	n.routes += o.routes
	n.versions += o.versions
	n.endpoints += o.endpoints
	n.dests += o.dests
}

// needOf is what cloning res takes from the slabs.
func needOf(res hasDoc) slabSizes {
	var n slabSizes
	switch r := res.(type) {
	case *Service:
		n.services = 1
		n.versions = len(r.Spec.Versions)
		for _, v := range r.Spec.Versions {
			n.endpoints += len(v.Endpoints)
		}
	case *Route:
		n.routes = 1
		n.dests = len(r.Spec.Split)
		for _, rule := range r.Spec.Rules {
			n.dests += len(rule.Split)
		}
	}
	return n
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
	services  slab[Service]
	routes    slab[Route]
	versions  slab[Version]
	endpoints slab[Endpoint]
	dests     slab[Destination]
}

func newSlabs(n slabSizes) *slabs {
	return &slabs{
		services:  slab[Service]{free: make([]Service, n.services)},
		routes:    slab[Route]{free: make([]Route, n.routes)},
		versions:  slab[Version]{free: make([]Version, n.versions)},
		endpoints: slab[Endpoint]{free: make([]Endpoint, n.endpoints)},
		dests:     slab[Destination]{free: make([]Destination, n.dests)},
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

// clone copies src like slices.Clone (nil stays nil, empty stays empty).
func (s *slab[T]) clone(src []T) []T {
	switch {
	case src == nil:
		return nil
	case len(src) == 0:
		return make([]T, 0)
	case len(s.free) < len(src):
		return slices.Clone(src)
	}
	out := s.free[:len(src):len(src)]
	s.free = s.free[len(src):]
	copy(out, src)
	return out
}

func (d doc) clone() doc {
	d.Metadata.Labels = maps.Clone(d.Metadata.Labels)
	return d
}

func (r *MeshConfig) clone(*slabs) hasDoc {
	c := *r
	c.doc = r.doc.clone()
	s := &c.Spec
	s.CA.Builtin = ptr(s.CA.Builtin)
	if v := s.CA.Vault; v != nil {
		vc := *v
		s.CA.Vault = &vc
	}
	s.Tracing = ptr(s.Tracing)
	s.Filters.Fanout.Remote = ptr(s.Filters.Fanout.Remote)
	s.Filters.SLO.Remote = ptr(s.Filters.SLO.Remote)
	return &c
}

func (r *Service) clone(sl *slabs) hasDoc {
	c := sl.services.one()
	*c = *r
	c.doc = r.doc.clone()
	s := &c.Spec
	s.Versions = sl.versions.clone(s.Versions)
	for i := range s.Versions {
		s.Versions[i].Labels = maps.Clone(s.Versions[i].Labels)
		s.Versions[i].Endpoints = sl.endpoints.clone(s.Versions[i].Endpoints)
	}
	s.HealthCheck = ptr(s.HealthCheck)
	s.ConnectionLimits = ptr(s.ConnectionLimits)
	s.OutlierDetection = ptr(s.OutlierDetection)
	return c
}

func (r *Route) clone(sl *slabs) hasDoc {
	c := sl.routes.one()
	*c = *r
	c.doc = r.doc.clone()
	s := &c.Spec
	s.Match.Headers = slices.Clone(s.Match.Headers)
	s.Rules = slices.Clone(s.Rules)
	for i := range s.Rules {
		s.Rules[i].Headers = slices.Clone(s.Rules[i].Headers)
		s.Rules[i].Split = sl.dests.clone(s.Rules[i].Split)
	}
	s.Split = sl.dests.clone(s.Split)
	s.Shadow = ptr(s.Shadow)
	if e := s.Ensemble; e != nil {
		ec := *e
		ec.Members = slices.Clone(e.Members)
		if st := e.Stacking; st != nil {
			ec.Stacking = &Stacking{Weights: slices.Clone(st.Weights), Bias: st.Bias}
		}
		s.Ensemble = &ec
	}
	if o := s.SLO; o != nil {
		oc := *o
		oc.Latency = slices.Clone(o.Latency)
		oc.BurnWindows = slices.Clone(o.BurnWindows)
		s.SLO = &oc
	}
	if rt := s.Retries; rt != nil {
		rc := *rt
		rc.On = slices.Clone(rt.On)
		s.Retries = &rc
	}
	if f := s.Fault; f != nil {
		s.Fault = &FaultInjection{Delay: ptr(f.Delay), Abort: ptr(f.Abort)}
	}
	return c
}

func (r *Gateway) clone(*slabs) hasDoc {
	c := *r
	c.doc = r.doc.clone()
	c.Spec.Nodes.IDs = slices.Clone(c.Spec.Nodes.IDs)
	c.Spec.Hosts = slices.Clone(c.Spec.Hosts)
	c.Spec.Routes = slices.Clone(c.Spec.Routes)
	return &c
}

func (r *Sidecar) clone(*slabs) hasDoc {
	c := *r
	c.doc = r.doc.clone()
	c.Spec.Nodes = slices.Clone(c.Spec.Nodes)
	if o := c.Spec.Outbound; o != nil {
		oc := *o
		oc.Routes = slices.Clone(o.Routes)
		c.Spec.Outbound = &oc
	}
	return &c
}

func (r *AuthorizationPolicy) clone(*slabs) hasDoc {
	c := *r
	c.doc = r.doc.clone()
	c.Spec.Rules = slices.Clone(c.Spec.Rules)
	for i := range c.Spec.Rules {
		x := &c.Spec.Rules[i]
		x.From.Identities = slices.Clone(x.From.Identities)
		x.From.Namespaces = slices.Clone(x.From.Namespaces)
		x.From.Services = slices.Clone(x.From.Services)
		x.From.Gateways = slices.Clone(x.From.Gateways)
		x.To.Models = slices.Clone(x.To.Models)
		x.To.Routes = slices.Clone(x.To.Routes)
		x.To.Paths = slices.Clone(x.To.Paths)
		x.To.PathPrefixes = slices.Clone(x.To.PathPrefixes)
	}
	return &c
}

// ptr returns a copy of *p, or nil; for structs without references.
func ptr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}
