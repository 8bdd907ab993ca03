package xds

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/internal/parallel"
)

// meshState is what one translation built, by position in its mesh.
type meshState struct {
	mesh *model.Mesh
	// clusters holds, per flavour, the built cluster of each of
	// mesh.Clusters that a group of that flavour used; nil elsewhere.
	clusters [2][]*builtCluster
	// shared holds, for a cluster whose resources are the same for both
	// flavours (see flavourFree), the entry built first by either: a
	// large plaintext mesh then keeps one copy of each cluster and
	// endpoint resource instead of two. The flavours are translated
	// concurrently, hence the atomic slots.
	shared []atomic.Pointer[builtCluster]
	// lastPos is, for each cluster, the position of the cluster of the same
	// name in the previous state's mesh, or -1.
	lastPos []int32
	// same memoises, per cluster, whether it equals that previous cluster
	// (sameUnknown, sameYes, sameNo): one deep comparison serves every
	// group and both flavours.
	same []int8
	// layout is whether mesh.Clusters has the names of the previous
	// state's mesh in the same order, which keeps cached cluster
	// positions (route references) valid.
	layout bool
	// index maps cluster names to positions, built only for names a
	// binary search does not find (a mesh not validated, so not sorted);
	// mu guards it, as groups translated concurrently may both need it.
	mu     sync.Mutex
	index  map[string]int
	groups map[string]*groupState
}

const (
	sameUnknown int8 = iota
	sameYes
	sameNo
)

// groupState is what one translation built for a group, by position in the
// group's listeners, virtual hosts and routes.
type groupState struct {
	group     *model.NodeGroup
	listeners []*builtListener
	// routes[i][k] are the routes built for virtual host k of listener
	// i's route configuration. It is made with the first route
	// configuration (nil until then): a proxyless group has thousands of
	// listeners and no route configuration.
	routes [][][]*builtRoute
	// listenerIndex and routeIndex find entries by name when they moved.
	listenerIndex map[string]int
	routeIndex    map[[2]int]map[string]int
	// out is what the group was given, once built without error.
	out *Resources
}

// state returns the state of the translation of m, starting one if m is not
// the mesh in progress (a translation that failed before its Sweep leaves
// its state behind; it is dropped here, the last committed one stays).
func (c *Cache) state(m *model.Mesh) *meshState {
	if c.cur != nil && c.cur.mesh == m {
		return c.cur
	}
	n := len(m.Clusters)
	st := &meshState{mesh: m, groups: map[string]*groupState{}}
	spare := c.spare
	if spare == nil {
		spare = &meshState{}
	}
	c.spare = nil
	st.clusters[0], st.clusters[1] = table(spare.clusters[0], n), table(spare.clusters[1], n)
	st.shared = table(spare.shared, n)
	if last := c.last; last != nil {
		st.lastPos, st.same = table(spare.lastPos, n), table(spare.same, n)
		st.layout = len(last.mesh.Clusters) == n
		shift := 0
		for i := range m.Clusters {
			j := last.clusterPos(m.Clusters[i].Name, i+shift)
			st.lastPos[i] = int32(j)
			if j != i {
				st.layout = false
			}
			if j >= 0 {
				shift = j - i
			}
		}
	}
	c.cur = st
	return st
}

// tables returns a state holding only st's reusable tables, with no
// pointers left in them, or nil for a nil st. Keeping the whole state
// until its tables are reused would keep alive its mesh, its group states
// and the resources they built (in a large mesh, as much again as the
// model itself) for nothing: no translation reads them again, and the
// garbage collector would mark them on every cycle.
func (st *meshState) tables() *meshState {
	if st == nil {
		return nil
	}
	clear(st.clusters[0])
	clear(st.clusters[1])
	clear(st.shared)
	return &meshState{clusters: st.clusters, shared: st.shared, lastPos: st.lastPos, same: st.same}
}

// table returns a zeroed slice of n elements, in s's array if large enough.
func table[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// prepare starts the state of m for the concurrent translation of its
// groups: what the groups share is created or computed here, so that they
// only read it and each writes only its own group state and its flavour's
// cluster table. The one costly part, comparing every cluster with the
// previous mesh's, is split between the cores.
func (c *Cache) prepare(ctx context.Context, m *model.Mesh) (*meshState, error) {
	st := c.state(m)
	for i := range m.Groups {
		st.group(&m.Groups[i])
	}
	if c.last == nil {
		return st, nil
	}
	err := parallel.Spans(ctx, len(m.Clusters), parallel.Parts(len(m.Clusters), 0), func(_, lo, hi int) error {
		for i := lo; i < hi; i++ {
			if i%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if j := st.lastPos[i]; j >= 0 {
				st.sameAsLast(i, &c.last.mesh.Clusters[j])
			}
		}
		return nil
	})
	return st, err
}

// clusterPos returns the position of the cluster named name in st's mesh,
// or -1; hint is where it probably is.
func (st *meshState) clusterPos(name string, hint int) int {
	cs := st.mesh.Clusters
	if hint >= 0 && hint < len(cs) && cs[hint].Name == name {
		return hint
	}
	return st.find(name)
}

// find looks name up by binary search (a validated mesh's clusters are
// sorted), then in an index for meshes that are not.
func (st *meshState) find(name string) int {
	cs := st.mesh.Clusters
	if i, ok := slices.BinarySearchFunc(cs, name, func(c model.Cluster, n string) int {
		return strings.Compare(c.Name, n)
	}); ok {
		return i
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.index == nil {
		st.index = make(map[string]int, len(cs))
		for i := range cs {
			st.index[cs[i].Name] = i
		}
	}
	if i, ok := st.index[name]; ok {
		return i
	}
	return -1
}

// sameAsLast reports whether cluster i equals prev, the cluster of the same
// name in the previous state's mesh.
func (st *meshState) sameAsLast(i int, prev *model.Cluster) bool {
	mc := &st.mesh.Clusters[i]
	if prev == mc {
		return true
	}
	switch st.same[i] {
	case sameYes:
		return true
	case sameNo:
		return false
	}
	eq := prev.Equal(mc)
	st.same[i] = sameNo
	if eq {
		st.same[i] = sameYes
	}
	return eq
}

// group returns the state of g in st, starting it if needed.
func (st *meshState) group(g *model.NodeGroup) *groupState {
	if gs := st.groups[g.Name]; gs != nil && gs.group == g {
		return gs
	}
	gs := &groupState{group: g, listeners: make([]*builtListener, len(g.Listeners))}
	st.groups[g.Name] = gs
	return gs
}

// listenerPos returns the position of the listener named name in gs, or -1.
func (gs *groupState) listenerPos(name string, hint int) int {
	ls := gs.group.Listeners
	if hint >= 0 && hint < len(ls) && ls[hint].Name == name {
		return hint
	}
	if gs.listenerIndex == nil {
		gs.listenerIndex = make(map[string]int, len(ls))
		for i := range ls {
			gs.listenerIndex[ls[i].Name] = i
		}
	}
	if i, ok := gs.listenerIndex[name]; ok {
		return i
	}
	return -1
}

// vhostPos returns the position of the virtual host named name in listener
// li of gs, or -1. Listeners have few virtual hosts: a scan will do.
func (gs *groupState) vhostPos(li int, name string, hint int) int {
	vhs := gs.group.Listeners[li].Routes.VirtualHosts
	if hint < len(vhs) && vhs[hint].Name == name {
		return hint
	}
	return slices.IndexFunc(vhs, func(vh model.VirtualHost) bool { return vh.Name == name })
}

// routePos returns the position of the route named name in virtual host k
// of listener li of gs, or -1.
func (gs *groupState) routePos(li, k int, name string, hint int) int {
	rs := gs.group.Listeners[li].Routes.VirtualHosts[k].Routes
	if hint >= 0 && hint < len(rs) && rs[hint].Name == name {
		return hint
	}
	key := [2]int{li, k}
	index := gs.routeIndex[key]
	if index == nil {
		if gs.routeIndex == nil {
			gs.routeIndex = map[[2]int]map[string]int{}
		}
		index = make(map[string]int, len(rs))
		for i := range rs {
			index[rs[i].Name] = i
		}
		gs.routeIndex[key] = index
	}
	if i, ok := index[name]; ok {
		return i
	}
	return -1
}

// column gathers one type's resources and versions for a group. While they
// are the previous translation's, in the same order, it only counts them,
// and it hands back the previous slices when they all are: a large type
// that did not change then costs no allocation, and the snapshot sees the
// very same resources.
type column struct {
	prev  []types.Resource
	prevV []string
	// size is the expected length, for the allocation if one is needed.
	size     int
	n        int
	own      bool
	items    []types.Resource
	versions []string
}

func (c *column) add(r types.Resource, v string) {
	if !c.own {
		if c.n < len(c.prev) && c.prev[c.n] == r && c.prevV[c.n] == v {
			c.n++
			return
		}
		c.own = true
		c.items = append(make([]types.Resource, 0, max(c.size, c.n+1)), c.prev[:c.n]...)
		c.versions = append(make([]string, 0, max(c.size, c.n+1)), c.prevV[:c.n]...)
	}
	c.items, c.versions = append(c.items, r), append(c.versions, v)
}

// result returns the resources and versions added. A shared prefix of the
// previous slices is capped, so an append to it cannot reach into them.
func (c *column) result() ([]types.Resource, []string) {
	if c.own {
		return c.items, c.versions
	}
	if c.n == 0 {
		return []types.Resource{}, []string{}
	}
	return c.prev[:c.n:c.n], c.prevV[:c.n:c.n]
}
