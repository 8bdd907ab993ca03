package policy

import (
	"maps"
	"slices"
)

// Clones used by the Loader to copy cached documents out: written by hand
// because reflection made copying most of the cost of a reload.
// TestClonesAreDeep fills every field and checks that no memory is shared.

func (d doc) clone() doc {
	d.Metadata.Labels = maps.Clone(d.Metadata.Labels)
	return d
}

func (r *MeshConfig) clone() hasDoc {
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

func (r *Service) clone() hasDoc {
	c := *r
	c.doc = r.doc.clone()
	s := &c.Spec
	s.Versions = slices.Clone(s.Versions)
	for i := range s.Versions {
		s.Versions[i].Labels = maps.Clone(s.Versions[i].Labels)
		s.Versions[i].Endpoints = slices.Clone(s.Versions[i].Endpoints)
	}
	s.HealthCheck = ptr(s.HealthCheck)
	s.ConnectionLimits = ptr(s.ConnectionLimits)
	s.OutlierDetection = ptr(s.OutlierDetection)
	return &c
}

func (r *Route) clone() hasDoc {
	c := *r
	c.doc = r.doc.clone()
	s := &c.Spec
	s.Match.Headers = slices.Clone(s.Match.Headers)
	s.Rules = slices.Clone(s.Rules)
	for i := range s.Rules {
		s.Rules[i].Headers = slices.Clone(s.Rules[i].Headers)
		s.Rules[i].Split = slices.Clone(s.Rules[i].Split)
	}
	s.Split = slices.Clone(s.Split)
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
	return &c
}

func (r *Gateway) clone() hasDoc {
	c := *r
	c.doc = r.doc.clone()
	c.Spec.Nodes.IDs = slices.Clone(c.Spec.Nodes.IDs)
	c.Spec.Hosts = slices.Clone(c.Spec.Hosts)
	c.Spec.Routes = slices.Clone(c.Spec.Routes)
	return &c
}

func (r *Sidecar) clone() hasDoc {
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

func (r *AuthorizationPolicy) clone() hasDoc {
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
