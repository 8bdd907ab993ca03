package model

import (
	"bytes"
	"slices"
)

// The Equal methods compare field by field, without reflection, because
// the translator compares every cluster and route configuration of a large
// mesh against the previous one on each change. TestEqualSeesEveryField
// mutates every field reachable from the sample mesh, so a field added to a
// type but forgotten here fails that test.

// Equal reports whether m and o describe the same mesh.
func (m *Mesh) Equal(o *Mesh) bool {
	if m == nil || o == nil {
		return m == o
	}
	return slices.EqualFunc(m.Groups, o.Groups, func(a, b NodeGroup) bool { return a.Equal(&b) }) &&
		slices.EqualFunc(m.Clusters, o.Clusters, func(a, b Cluster) bool { return a.Equal(&b) }) &&
		slices.EqualFunc(m.Secrets, o.Secrets, func(a, b Secret) bool { return a.Equal(&b) }) &&
		ptrEqual(m.Tracing, o.Tracing)
}

// Equal reports whether two groups are defined the same way.
func (g *NodeGroup) Equal(o *NodeGroup) bool {
	return g.Name == o.Name && g.Nodes.Role == o.Nodes.Role && g.Nodes.Service == o.Nodes.Service &&
		slices.Equal(g.Nodes.IDs, o.Nodes.IDs) && slices.Equal(g.ExtraClusters, o.ExtraClusters) &&
		slices.EqualFunc(g.Listeners, o.Listeners, func(a, b Listener) bool { return a.Equal(&b) })
}

// Equal reports whether two listeners are the same, routes included.
func (l *Listener) Equal(o *Listener) bool {
	return l.Name == o.Name && l.Kind == o.Kind && l.Address == o.Address && l.Port == o.Port &&
		l.Protocol == o.Protocol && slices.Equal(l.Filters, o.Filters) &&
		ptrEqualFunc(l.TLS, o.TLS, func(a, b *DownstreamTLS) bool {
			return a.CertSecret == b.CertSecret && a.TrustSecret == b.TrustSecret &&
				a.RequireClientCert == b.RequireClientCert && slices.Equal(a.MatchSANs, b.MatchSANs)
		}) &&
		ptrEqualFunc(l.Authorization, o.Authorization, func(a, b *Authorization) bool {
			return a.Action == b.Action && slices.EqualFunc(a.Rules, b.Rules, func(x, y AuthzRule) bool {
				return x.Name == y.Name && slices.Equal(x.Principals, y.Principals) && slices.Equal(x.Paths, y.Paths) &&
					slices.Equal(x.Prefixes, y.Prefixes) && slices.Equal(x.Headers, y.Headers)
			})
		}) &&
		l.Routes.Equal(&o.Routes)
}

// Equal reports whether two route configurations are the same.
func (rc *RouteConfig) Equal(o *RouteConfig) bool {
	return rc.Name == o.Name && slices.EqualFunc(rc.VirtualHosts, o.VirtualHosts, func(a, b VirtualHost) bool {
		return a.Name == b.Name && slices.Equal(a.Domains, b.Domains) &&
			slices.EqualFunc(a.Routes, b.Routes, func(x, y Route) bool { return x.Equal(&y) })
	})
}

// Equal reports whether two routes are the same.
func (r *Route) Equal(o *Route) bool {
	return r.Name == o.Name && r.Match.Path == o.Match.Path && r.Match.Prefix == o.Match.Prefix &&
		r.Match.SeparatedPrefix == o.Match.SeparatedPrefix &&
		r.Match.GRPC == o.Match.GRPC && slices.Equal(r.Match.Headers, o.Match.Headers) &&
		r.Action.Equal(&o.Action)
}

// Equal reports whether two route actions are the same.
func (a *RouteAction) Equal(o *RouteAction) bool {
	return a.Timeout == o.Timeout && slices.Equal(a.Clusters, o.Clusters) && slices.Equal(a.Mirrors, o.Mirrors) &&
		ptrEqual(a.Fault, o.Fault) &&
		ptrEqualFunc(a.Retry, o.Retry, func(x, y *RetryPolicy) bool {
			return x.Attempts == y.Attempts && x.PerTryTimeout == y.PerTryTimeout && slices.Equal(x.On, y.On)
		}) &&
		ptrEqualFunc(a.Fanout, o.Fanout, func(x, y *Fanout) bool {
			return x.Strategy == y.Strategy && x.Quorum == y.Quorum && x.Timeout == y.Timeout && x.Sequence == y.Sequence &&
				slices.Equal(x.Members, y.Members) && ptrEqual(x.Observe, y.Observe) &&
				ptrEqualFunc(x.Stacking, y.Stacking, func(s, t *Stacking) bool { return s.Bias == t.Bias && slices.Equal(s.Weights, t.Weights) })
		}) &&
		ptrEqualFunc(a.SLO, o.SLO, func(x, y *SLO) bool {
			return x.ErrorRate == y.ErrorRate && x.Availability == y.Availability && x.BudgetHeader == y.BudgetHeader &&
				slices.Equal(x.Latency, y.Latency) && slices.Equal(x.Windows, y.Windows)
		})
}

// Equal reports whether two clusters are the same, endpoints included.
func (c *Cluster) Equal(o *Cluster) bool {
	return c.EqualSettings(o) && slices.EqualFunc(c.Localities, o.Localities, func(a, b Locality) bool {
		return a.Region == b.Region && a.Zone == b.Zone && a.SubZone == b.SubZone && a.Weight == b.Weight &&
			a.Priority == b.Priority && slices.Equal(a.Endpoints, b.Endpoints)
	})
}

// EqualSettings reports whether two clusters are the same apart from their
// endpoints (what the CDS resource depends on).
func (c *Cluster) EqualSettings(o *Cluster) bool {
	return c.Name == o.Name && c.Service == o.Service && c.Version == o.Version && c.Protocol == o.Protocol &&
		c.ConnectTimeout == o.ConnectTimeout && c.Identity == o.Identity &&
		ptrEqual(c.HealthCheck, o.HealthCheck) && ptrEqual(c.Limits, o.Limits) && ptrEqual(c.Outlier, o.Outlier) &&
		ptrEqualFunc(c.TLS, o.TLS, func(a, b *UpstreamTLS) bool {
			return a.CertSecret == b.CertSecret && a.TrustSecret == b.TrustSecret && a.SNI == b.SNI && slices.Equal(a.MatchSANs, b.MatchSANs)
		})
}

// Equal reports whether two secrets hold the same material.
func (s *Secret) Equal(o *Secret) bool {
	return s.Name == o.Name && bytes.Equal(s.TrustBundle, o.TrustBundle) &&
		ptrEqualFunc(s.Certificate, o.Certificate, func(a, b *Certificate) bool {
			return bytes.Equal(a.ChainPEM, b.ChainPEM) && bytes.Equal(a.KeyPEM, b.KeyPEM)
		})
}

// ptrEqual compares two optional values of a comparable type.
func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// ptrEqualFunc compares two optional values with eq.
func ptrEqualFunc[T any](a, b *T, eq func(a, b *T) bool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return eq(a, b)
}
