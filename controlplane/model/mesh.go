package model

import (
	"cmp"
	"context"
	"slices"
	"sort"

	"github.com/maestro-ml/maestro/internal/parallel"
)

// GroupFor returns the name of the group node belongs to: the group listing
// its ID, else the group matching its role and service, else the group
// matching its role with no service. ok is false if none matches.
func (m *Mesh) GroupFor(node NodeInfo) (name string, ok bool) {
	for _, g := range m.Groups {
		if _, found := slices.BinarySearch(g.Nodes.IDs, node.ID); found {
			return g.Name, true
		}
	}
	if node.Role == "" {
		return "", false
	}
	roleOnly := ""
	for _, g := range m.Groups {
		if g.Nodes.Role != node.Role {
			continue
		}
		if g.Nodes.Service != "" && g.Nodes.Service == node.Service {
			return g.Name, true
		}
		if g.Nodes.Service == "" && roleOnly == "" {
			roleOnly = g.Name
		}
	}
	return roleOnly, roleOnly != ""
}

// InlineRoutes reports whether l carries its route configuration inline
// (the proxyless gRPC kinds) rather than naming it for RDS.
func (l *Listener) InlineRoutes() bool {
	return l.Kind == ListenerAPI || l.Kind == ListenerGRPCServer
}

// Group returns the group named name, or nil.
func (m *Mesh) Group(name string) *NodeGroup {
	i, ok := slices.BinarySearchFunc(m.Groups, name, func(g NodeGroup, n string) int { return cmp.Compare(g.Name, n) })
	if !ok {
		return nil
	}
	return &m.Groups[i]
}

// Cluster returns the cluster named name, or nil. Clusters must be sorted.
func (m *Mesh) Cluster(name string) *Cluster {
	i, ok := slices.BinarySearchFunc(m.Clusters, name, func(c Cluster, n string) int { return cmp.Compare(c.Name, n) })
	if !ok {
		return nil
	}
	return &m.Clusters[i]
}

// Secret returns the secret named name, or nil. Secrets must be sorted.
func (m *Mesh) Secret(name string) *Secret {
	i, ok := slices.BinarySearchFunc(m.Secrets, name, func(s Secret, n string) int { return cmp.Compare(s.Name, n) })
	if !ok {
		return nil
	}
	return &m.Secrets[i]
}

// Normalize sorts every slice the package doc says is sorted, so a Mesh
// built in any order has one canonical form (and one Hash). Route order
// within a virtual host and sequence members are left as given, since their
// order has meaning.
func (m *Mesh) Normalize() { m.normalize(1) }

// normalize is Normalize on up to workers goroutines: each group, and the
// clusters, touch only their own slices.
func (m *Mesh) normalize(workers int) {
	sortByName(m.Groups, func(g *NodeGroup) string { return g.Name })
	sortByName(m.Secrets, func(s *Secret) string { return s.Name })
	// Index len(m.Groups) stands for the clusters.
	_ = parallel.Each(context.Background(), len(m.Groups)+1, workers, func(_ context.Context, i int) error {
		if i == len(m.Groups) {
			sortByName(m.Clusters, func(c *Cluster) string { return c.Name })
			for ci := range m.Clusters {
				normalizeCluster(&m.Clusters[ci])
			}
			return nil
		}
		g := &m.Groups[i]
		sort.Strings(g.Nodes.IDs)
		sort.Strings(g.ExtraClusters)
		sortByName(g.Listeners, func(l *Listener) string { return l.Name })
		for li := range g.Listeners {
			normalizeListener(&g.Listeners[li])
		}
		return nil
	})
}

func normalizeListener(l *Listener) {
	if l.TLS != nil {
		sort.Strings(l.TLS.MatchSANs)
	}
	if l.Authorization != nil {
		sortByName(l.Authorization.Rules, func(r *AuthzRule) string { return r.Name })
		for ri := range l.Authorization.Rules {
			r := &l.Authorization.Rules[ri]
			sort.Strings(r.Principals)
			sort.Strings(r.Paths)
			sort.Strings(r.Prefixes)
		}
	}
	sortByName(l.Routes.VirtualHosts, func(v *VirtualHost) string { return v.Name })
	for vi := range l.Routes.VirtualHosts {
		vh := &l.Routes.VirtualHosts[vi]
		sort.Strings(vh.Domains)
		for ri := range vh.Routes {
			normalizeAction(&vh.Routes[ri].Action)
		}
	}
}

func normalizeAction(a *RouteAction) {
	sortByName(a.Clusters, func(w *WeightedCluster) string { return w.Name })
	sortByName(a.Mirrors, func(m *Mirror) string { return m.Cluster })
	if a.Retry != nil {
		sort.Strings(a.Retry.On)
	}
	if a.Fanout != nil {
		normalizeFanout(a.Fanout)
	}
	if a.SLO != nil {
		normalizeSLO(a.SLO)
	}
}

func normalizeCluster(c *Cluster) {
	if c.TLS != nil {
		sort.Strings(c.TLS.MatchSANs)
	}
	if len(c.Localities) > 1 {
		slices.SortStableFunc(c.Localities, func(x, y Locality) int {
			return cmp.Or(cmp.Compare(x.Region, y.Region), cmp.Compare(x.Zone, y.Zone),
				cmp.Compare(x.SubZone, y.SubZone), cmp.Compare(x.Priority, y.Priority))
		})
	}
	for li := range c.Localities {
		if eps := c.Localities[li].Endpoints; len(eps) > 1 {
			slices.SortStableFunc(eps, func(x, y Endpoint) int {
				return cmp.Or(cmp.Compare(x.Address, y.Address), cmp.Compare(x.Port, y.Port))
			})
		}
	}
}

// sortByName sorts s stably by the key name returns. A freshly built mesh
// is mostly in order already, and checking that is far cheaper than a
// stable sort of tens of thousands of clusters.
func sortByName[T any](s []T, name func(*T) string) {
	for i := 1; i < len(s); i++ {
		if name(&s[i]) < name(&s[i-1]) {
			slices.SortStableFunc(s, func(x, y T) int { return cmp.Compare(name(&x), name(&y)) })
			return
		}
	}
}
