package xds

import (
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// memo is the reuse layer of one flavour: translation asks it for each
// resource, and it returns what an earlier translation built from an equal
// model object or what the pure builder makes now. Its tables hold, per
// resource type and list of objects, what was built from each object. The
// zero memo (ForGroup without a cache) has no tables: it reuses nothing.
type memo struct {
	gen    uint64
	lds    table[listenerIn, built]
	routes table[routeIn, built]
	// cds holds a cluster's CDS and EDS resources together: they are
	// built from the same model object.
	cds table[*model.Cluster, builtCluster]
	// outs is what each group was last given: a type whose resources
	// are all the same hands back its slices (see column).
	outs map[string]groupOut
	// shared[i] is what the two flavours share about cluster i of the
	// mesh in translation; they use it concurrently, hence atomic slots.
	shared []sharedCluster
	work   scratch
}

// sharedCluster is what one flavour learnt about a cluster of the mesh in
// translation that spares the other flavour work.
type sharedCluster struct {
	// equalTo is an earlier object the cluster was found Equal to:
	// comparing every cluster of a large mesh takes milliseconds.
	equalTo atomic.Pointer[model.Cluster]
	// built holds the resources of a cluster whose resources are the
	// same for both flavours (see flavourFree): a large plaintext mesh
	// then keeps one copy of each cluster and endpoint resource, not two.
	built atomic.Pointer[builtCluster]
}

// newMemo returns a memo with empty tables.
func newMemo() memo {
	return memo{
		lds:    table[listenerIn, built]{},
		routes: table[routeIn, built]{},
		cds:    table[*model.Cluster, builtCluster]{},
		outs:   map[string]groupOut{},
	}
}

type groupOut struct {
	res *Resources
	gen uint64
}

// built is a validated resource and its version.
type built struct {
	res types.Resource
	v   string
}

// builtCluster is a cluster's CDS resource and its EDS one (nil for a
// DNS cluster, which carries its endpoints).
type builtCluster struct {
	cds built
	eds *built
}

// list names a list of model objects whose resources a table keeps: the
// mesh's clusters (no group, no parent), a group's listeners (no parent),
// the routes of a group's route configuration.
type list struct{ group, parent string }

// table holds what earlier translations built from the objects of one
// type, per list.
type table[In, Out any] map[list]*slots[In, Out]

// slots holds what was built from the objects of one list, by position in
// the list: at the last translation kept by Sweep (prev) and at the one in
// progress (cur).
//
// An object is looked for by name, first at the position (plus the shift
// of the last object that moved) it has now: the next mesh mostly has the
// same objects at the same positions, so this costs a string comparison
// where a map keyed by name costs a hash and, on a large mesh whose
// entries are no longer in the processor's caches, several memory
// accesses; BenchmarkTranslateChange took three times as long with maps.
type slots[In, Out any] struct {
	gen       uint64
	prev, cur []*entry[In, Out]
	// index maps the names in prev to their positions; it is built the
	// first time an object is not at its position.
	index map[string]int
	shift int
}

type entry[In, Out any] struct {
	name string
	in   In
	out  Out
}

// slots returns the slots of list l, of n objects, for translation gen;
// those of a nil table reuse nothing.
func (t table[In, Out]) slots(gen uint64, l list, n int) *slots[In, Out] {
	if t == nil {
		return nil
	}
	s := t[l]
	if s == nil {
		s = &slots[In, Out]{}
		t[l] = s
	}
	if s.gen != gen || len(s.cur) != n {
		s.gen, s.cur, s.shift = gen, zeroed(s.cur, n), 0
	}
	return s
}

// reuse returns what was built from the object named name, at position at
// of the list, if same(prev, in) holds for the object prev it was built
// from; otherwise what build makes of in, given what the last translation
// built from the object of that name if any (nil otherwise). This is the
// one place where translation meets the cache.
func (s *slots[In, Out]) reuse(at int, name string, in In, same func(prev, in In) bool, build func(in In, prev *entry[In, Out]) (Out, error)) (Out, error) {
	if s == nil {
		return build(in, nil)
	}
	// Another group of this translation may have asked already; else the
	// object is most likely where it was (plus the shift). Only same
	// decides: the name is only how an object that moved is found, so an
	// object found where it was costs no name comparison of its own.
	if e := s.cur[at]; e != nil && same(e.in, in) {
		return e.out, nil
	}
	var hinted *entry[In, Out]
	if j := at + s.shift; j >= 0 && j < len(s.prev) {
		hinted = s.prev[j]
	}
	if hinted != nil && same(hinted.in, in) {
		return s.keep(at, hinted, name, in), nil
	}
	prev := s.previous(at, name)
	if prev != nil && prev != hinted && same(prev.in, in) {
		return s.keep(at, prev, name, in), nil
	}
	out, err := build(in, prev)
	if err != nil {
		return out, err
	}
	return s.keep(at, &entry[In, Out]{out: out}, name, in), nil
}

// keep makes e the entry of the object in, named name, at position at,
// and returns what was built. It keeps the newest object: the old mesh is
// then not kept alive, and the next group asking finds it by pointer.
func (s *slots[In, Out]) keep(at int, e *entry[In, Out], name string, in In) Out {
	e.name, e.in = name, in
	s.cur[at] = e
	return e.out
}

// previous returns the entry of the last translation named name, or nil.
func (s *slots[In, Out]) previous(at int, name string) *entry[In, Out] {
	if j := at + s.shift; j >= 0 && j < len(s.prev) && s.prev[j] != nil && s.prev[j].name == name {
		return s.prev[j]
	}
	if len(s.prev) == 0 {
		return nil
	}
	if s.index == nil {
		s.index = make(map[string]int, len(s.prev))
		for j, e := range s.prev {
			if e != nil {
				s.index[e.name] = j
			}
		}
	}
	j, ok := s.index[name]
	if !ok {
		return nil
	}
	s.shift = j - at
	return s.prev[j]
}

// sweep makes what translation gen built the base of the next one and
// forgets the rest.
func (t table[In, Out]) sweep(gen uint64) {
	for l, s := range t {
		if s.gen != gen {
			delete(t, l)
			continue
		}
		clear(s.prev)
		s.prev, s.cur, s.index, s.shift = s.cur, s.prev[:0], nil, 0
	}
}

func (m *memo) sweep() {
	m.lds.sweep(m.gen)
	m.routes.sweep(m.gen)
	m.cds.sweep(m.gen)
	for name, o := range m.outs {
		if o.gen != m.gen {
			delete(m.outs, name)
		}
	}
}

// keep records res as what group name was given.
func (m *memo) keep(name string, res *Resources) {
	if m.outs != nil {
		m.outs[name] = groupOut{res: res, gen: m.gen}
	}
}

// last returns what group name was last given, or nothing.
func (m *memo) last(name string) Resources {
	if o, ok := m.outs[name]; ok {
		return *o.res
	}
	return Resources{}
}

// listenerIn is what a listener resource is built from.
type listenerIn struct {
	l       *model.Listener
	tracing *model.Tracing
	// fault is hasFault of the listener's routes, which the resource of
	// an RDS listener depends on (see sameListener).
	fault bool
}

// listener returns the LDS resource of listener i of g (with tracing, if
// set). A group of proxyless clients has one API listener, with its routes
// inline, per target: thousands in a large mesh.
func (m *memo) listener(g *model.NodeGroup, i int, tracing *model.Tracing) (built, error) {
	l := &g.Listeners[i]
	in := listenerIn{l: l, tracing: tracing, fault: !l.InlineRoutes() && hasFault(&l.Routes)}
	s := m.lds.slots(m.gen, list{group: g.Name}, len(g.Listeners))
	return s.reuse(i, l.Name, in, sameListener, func(in listenerIn, _ *entry[listenerIn, built]) (built, error) {
		ln, err := Listener(in.l, in.tracing)
		if err != nil {
			return built{}, fmt.Errorf("listener %q: %w", in.l.Name, err)
		}
		return m.work.built(resource.ListenerType, in.l.Name, ln)
	})
}

// sameListener reports whether l gives the resource that prev gave. The
// resource of a listener with its routes in RDS holds no routes: it names
// their configuration and carries the fault filter when a route injects
// faults (ConnectionManager, HTTPFilters), so its routes, which
// routeConfiguration compares one by one, are not compared here; a large
// gateway listener would otherwise compare every route twice.
func sameListener(prev, l listenerIn) bool {
	if !tracingEqual(prev.tracing, l.tracing) {
		return false
	}
	if prev.l == l.l {
		return true
	}
	if prev.l.InlineRoutes() || l.l.InlineRoutes() {
		return prev.l.Equal(l.l)
	}
	a, b := *prev.l, *l.l
	a.Routes, b.Routes = model.RouteConfig{Name: a.Routes.Name}, model.RouteConfig{Name: b.Routes.Name}
	return a.Equal(&b) && prev.fault == l.fault
}

func tracingEqual(a, b *model.Tracing) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// routeIn is what a route resource is built from: the route and the
// filter scope of its listener (which filters it disables depends on it).
type routeIn struct {
	r     *model.Route
	scope FilterScope
}

// routeConfiguration returns the RDS resource of listener l in group
// (ListenerRouteConfiguration), composed of routes reused when unchanged.
// Each route is validated when built; the configuration and its virtual
// hosts are validated without their routes, and the version combines the
// routes' versions, so an unchanged route costs neither validation nor
// encoding.
func (m *memo) routeConfiguration(group string, l *model.Listener) (built, error) {
	rc := &l.Routes
	scope := FilterScopeOf(l)
	n := routeCount(rc)
	s := m.routes.slots(m.gen, list{group: group, parent: rc.Name}, n)
	build := func(in routeIn, _ *entry[routeIn, built]) (built, error) {
		rt, err := ScopedRoute(in.r, in.scope)
		if err != nil {
			return built{}, fmt.Errorf("route %q: %w", in.r.Name, err)
		}
		return m.work.built(resource.RouteType, in.r.Name, rt)
	}
	versions := make([]string, 0, n)
	out, err := composeRoutes(rc, func(r *model.Route) (*routev3.Route, error) {
		e, err := s.reuse(len(versions), r.Name, routeIn{r, scope}, sameRoute, build)
		if err != nil {
			return nil, err
		}
		versions = append(versions, e.v)
		return e.res.(*routev3.Route), nil
	})
	if err != nil {
		return built{}, fmt.Errorf("route %q: %w", rc.Name, err)
	}
	v, err := rdsVersion(out, versions)
	if err != nil {
		return built{}, fmt.Errorf("route %q: %w", rc.Name, err)
	}
	return built{res: out, v: v}, nil
}

func sameRoute(prev, in routeIn) bool {
	return prev.scope == in.scope && (prev.r == in.r || prev.r.Equal(in.r))
}

// routeCount is the number of routes in rc.
func routeCount(rc *model.RouteConfig) int {
	n := 0
	for i := range rc.VirtualHosts {
		n += len(rc.VirtualHosts[i].Routes)
	}
	return n
}

// rdsVersion validates rc and its virtual hosts without their routes (each
// route was validated when built) and returns its version: a hash of their
// encodings and of the routes' versions, in rc's order.
func rdsVersion(rc *routev3.RouteConfiguration, routes []string) (string, error) {
	shell := &routev3.RouteConfiguration{Name: rc.Name}
	if err := shell.ValidateAll(); err != nil {
		return "", err
	}
	h := xxhash.New()
	if err := hashShell(h, shell); err != nil {
		return "", err
	}
	for _, vh := range rc.VirtualHosts {
		vhShell := &routev3.VirtualHost{Name: vh.Name, Domains: vh.Domains}
		if err := vhShell.ValidateAll(); err != nil {
			return "", fmt.Errorf("virtual host %q: %w", vh.Name, err)
		}
		if err := hashShell(h, vhShell); err != nil {
			return "", err
		}
		for range vh.Routes {
			_, _ = h.WriteString(routes[0])
			routes = routes[1:]
		}
	}
	return strconv.FormatUint(h.Sum64(), 16), nil
}

// hashShell adds m's encoding, and a separator, to h.
func hashShell(h *xxhash.Digest, m proto.Message) error {
	b, err := encode(nil, m)
	if err != nil {
		return err
	}
	_, _ = h.Write(b)
	_, _ = h.Write([]byte{0})
	return nil
}

// cluster returns the CDS and EDS resources of cluster i of cs, the
// mesh's clusters, for the memo's flavour. An EDS cluster's resource does
// not hold its endpoints, so it survives an endpoint change; a DNS
// cluster's does not.
func (m *memo) cluster(cs []model.Cluster, i int, proxyless bool) (builtCluster, error) {
	s := m.cds.slots(m.gen, list{}, len(cs))
	var sh *sharedCluster
	if i < len(m.shared) {
		sh = &m.shared[i]
	}
	same := func(prev, c *model.Cluster) bool {
		if prev == c || (sh != nil && sh.equalTo.Load() == prev) {
			return true
		}
		if !prev.Equal(c) {
			return false
		}
		if sh != nil {
			sh.equalTo.Store(prev)
		}
		return true
	}
	return s.reuse(i, cs[i].Name, &cs[i], same, func(c *model.Cluster, prev *entry[*model.Cluster, builtCluster]) (builtCluster, error) {
		free := sh != nil && flavourFree(c)
		if free {
			if b := sh.built.Load(); b != nil {
				return *b, nil
			}
		}
		var out builtCluster
		eds := IsEDS(c)
		if prev != nil && eds && prev.in.EqualSettings(c) && IsEDS(prev.in) {
			out.cds = prev.out.cds
		} else {
			cl, err := m.work.parts.cluster(c, proxyless)
			if err != nil {
				return out, fmt.Errorf("cluster %q: %w", c.Name, err)
			}
			if out.cds, err = m.work.built(resource.ClusterType, c.Name, cl); err != nil {
				return out, err
			}
		}
		if eds {
			b, err := m.work.built(resource.EndpointType, c.Name, Endpoints(c))
			if err != nil {
				return out, err
			}
			out.eds = &b
		}
		// The other flavour may have built the same resources in the
		// meantime: either copy will do (they are equal), keep one.
		if free && !sh.built.CompareAndSwap(nil, &out) {
			return *sh.built.Load(), nil
		}
		return out, nil
	})
}

// flavourFree reports whether c's cluster and endpoint resources are the
// same for Envoy and for proxyless gRPC clients: an EDS cluster (a DNS
// cluster's kind depends on the flavour) with neither TLS (SDS secrets or
// gRPC certificate providers) nor an active health check (left out for
// gRPC). See clusterParts.cluster.
func flavourFree(c *model.Cluster) bool {
	return IsEDS(c) && c.TLS == nil && c.HealthCheck == nil
}

// scratch is what building resources reuses from one resource to the next:
// one per memo, so per goroutine. A nil *scratch allocates afresh.
type scratch struct {
	parts clusterParts
	// buf is reused to encode resources for their versions.
	buf []byte
	// used and clusters are a group's flags and list of used clusters
	// (see references), needed only while it is built: in a large mesh,
	// new ones for every group and change would be a good share of what
	// a change allocates.
	used     []bool
	clusters []int
}

// built validates res and returns it with its version.
func (w *scratch) built(t resource.Type, name string, res types.Resource) (built, error) {
	v, err := w.version(t, name, res)
	if err != nil {
		return built{}, err
	}
	return built{res: res, v: v}, nil
}

// version validates res and returns the hash of its deterministic encoding.
func (w *scratch) version(t resource.Type, name string, res types.Resource) (string, error) {
	if val, ok := res.(validator); ok {
		if err := val.ValidateAll(); err != nil {
			return "", fmt.Errorf("%s %q: %w", typeName(t), name, err)
		}
	}
	var buf []byte
	if w != nil {
		buf = w.buf[:0]
	}
	b, err := encode(buf, res)
	if err != nil {
		return "", fmt.Errorf("%s %q: encode: %w", typeName(t), name, err)
	}
	if w != nil {
		w.buf = b
	}
	return strconv.FormatUint(xxhash.Sum64(b), 16), nil
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

func (c *column) add(b built) {
	if !c.own {
		if c.n < len(c.prev) && c.prev[c.n] == b.res && c.prevV[c.n] == b.v {
			c.n++
			return
		}
		c.own = true
		c.items = append(make([]types.Resource, 0, max(c.size, c.n+1)), c.prev[:c.n]...)
		c.versions = append(make([]string, 0, max(c.size, c.n+1)), c.prevV[:c.n]...)
	}
	c.items, c.versions = append(c.items, b.res), append(c.versions, b.v)
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
