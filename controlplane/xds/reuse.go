package xds

import (
	"fmt"
	"strconv"

	"github.com/cespare/xxhash/v2"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// builtListener returns the LDS resource of listener i of the group,
// rebuilt only when the listener or the tracing settings changed since the
// previous translation, where it was listener last (-1 if none). A group of
// proxyless clients has one API listener, with its routes inline, per
// target: thousands in a large mesh.
func (b *groupBuilder) builtListener(i, last int, tracing *model.Tracing) (*builtListener, error) {
	l := &b.group.Listeners[i]
	if b.gs != nil {
		if e := b.gs.listeners[i]; e != nil {
			return e, nil
		}
		if last >= 0 {
			prev, pl := b.lastGS.listeners[last], &b.lastGS.group.Listeners[last]
			if prev != nil && tracingEqual(prev.tracing, tracing) && (pl == l || sameListener(pl, l, prev.fault)) {
				e := prev
				if !b.st.layout && l.InlineRoutes() {
					// Cluster positions moved: resolve the names again.
					moved := *prev
					moved.refs, moved.refsOK = b.inlineRefs(l)
					e = &moved
				}
				b.gs.listeners[i] = e
				return e, nil
			}
		}
	}
	e, err := b.work.buildListener(l, tracing)
	if err != nil {
		return nil, err
	}
	if b.gs != nil {
		if l.InlineRoutes() {
			e.refs, e.refsOK = b.inlineRefs(l)
		}
		b.gs.listeners[i] = e
	}
	return e, nil
}

// sameListener reports whether l gives the resource that prev, whose routes
// had fault injection if prevFault, gave. The resource of a listener with
// its routes in RDS holds no routes: it names their configuration and
// carries the fault filter when a route injects faults (ConnectionManager,
// HTTPFilters), so its routes, which routeConfiguration compares one by
// one, are not compared here; a large gateway listener would otherwise
// compare every route twice.
func sameListener(prev, l *model.Listener, prevFault bool) bool {
	if prev.InlineRoutes() || l.InlineRoutes() {
		return prev.Equal(l)
	}
	a, b := *prev, *l
	a.Routes, b.Routes = model.RouteConfig{Name: prev.Routes.Name}, model.RouteConfig{Name: l.Routes.Name}
	return a.Equal(&b) && hasFault(&l.Routes) == prevFault
}

// routeConfiguration builds the RDS resource of listener i's routes with
// composeRoutes, each route reused when unchanged since the previous
// translation (last is the listener's position there, or -1). Each route
// is validated when built; the configuration and its virtual hosts are
// validated without their routes, and the version combines the routes'
// hashes, so an unchanged route costs neither validation nor encoding.
func (b *groupBuilder) routeConfiguration(i, last int) (*routev3.RouteConfiguration, string, error) {
	rc := &b.group.Listeners[i].Routes
	var built [][]*builtRoute
	if b.gs != nil {
		if b.gs.routes == nil {
			b.gs.routes = make([][][]*builtRoute, len(b.group.Listeners))
		}
		if b.gs.routes[i] == nil {
			b.gs.routes[i] = make([][]*builtRoute, len(rc.VirtualHosts))
		}
		built = b.gs.routes[i]
	}
	marked := b.marked != nil
	versions := make([]uint64, 0, routeCount(rc))
	var prev []*builtRoute
	k, j, lastK, shift := -1, 0, -1, 0
	out, err := composeRoutes(rc, func(mvh *model.VirtualHost, r *model.Route) (*routev3.Route, error) {
		if k < 0 || mvh != &rc.VirtualHosts[k] {
			// The first route of the next virtual host.
			k, j, prev, lastK, shift = k+1, 0, nil, -1, 0
			if last >= 0 {
				if lastK = b.lastGS.vhostPos(last, mvh.Name, k); lastK >= 0 {
					if rs := b.lastGS.routes; last < len(rs) && rs[last] != nil {
						prev = rs[last][lastK]
					}
				}
			}
			if built != nil && built[k] == nil {
				built[k] = make([]*builtRoute, len(mvh.Routes))
			}
		}
		defer func() { j++ }()
		var e *builtRoute
		if built != nil {
			e = built[k][j]
		}
		if e == nil && prev != nil {
			if lastJ := b.lastGS.routePos(last, lastK, r.Name, j+shift); lastJ >= 0 {
				shift = lastJ - j
				pr := &b.lastGS.group.Listeners[last].Routes.VirtualHosts[lastK].Routes[lastJ]
				if p := prev[lastJ]; p != nil && (pr == r || pr.Equal(r)) {
					e = p
					if !b.st.layout {
						moved := *p
						moved.refs, moved.refsOK = b.refsOf(&r.Action, nil)
						e = &moved
					}
				}
			}
		}
		if e == nil {
			rt, v, err := b.work.buildRoute(r)
			if err != nil {
				return nil, err
			}
			e = &builtRoute{route: rt, v: v}
			if built != nil {
				e.refs, e.refsOK = b.refsOf(&r.Action, nil)
			}
		}
		if built != nil {
			built[k][j] = e
		}
		if marked {
			if e.refsOK {
				b.mark(e.refs)
			} else {
				marked = false
			}
		}
		versions = append(versions, e.v)
		return e.route, nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("route %q: %w", rc.Name, err)
	}
	v, err := rdsVersion(out, versions)
	if err != nil {
		return nil, "", fmt.Errorf("route %q: %w", rc.Name, err)
	}
	if marked {
		b.marked[i] = true
	}
	return out, v, nil
}

// rdsVersion validates rc and its virtual hosts without their routes (each
// route was validated when built) and returns its version: a hash of their
// encodings and of the routes' hashes, in rc's order.
func rdsVersion(rc *routev3.RouteConfiguration, routes []uint64) (string, error) {
	shell := &routev3.RouteConfiguration{Name: rc.Name}
	if err := shell.ValidateAll(); err != nil {
		return "", err
	}
	h := xxhash.New()
	if err := hashShell(h, shell); err != nil {
		return "", err
	}
	var num []byte
	for _, vh := range rc.VirtualHosts {
		vhShell := &routev3.VirtualHost{Name: vh.Name, Domains: vh.Domains}
		if err := vhShell.ValidateAll(); err != nil {
			return "", fmt.Errorf("virtual host %q: %w", vh.Name, err)
		}
		if err := hashShell(h, vhShell); err != nil {
			return "", err
		}
		for range vh.Routes {
			num = strconv.AppendUint(num[:0], routes[0], 16)
			_, _ = h.Write(num)
			routes = routes[1:]
		}
	}
	return strconv.FormatUint(h.Sum64(), 16), nil
}

// inlineRefs returns the positions of the clusters l's routes send to, and
// whether every name resolved.
func (b *groupBuilder) inlineRefs(l *model.Listener) ([]int32, bool) {
	var refs []int32
	ok := true
	for k := range l.Routes.VirtualHosts {
		for j := range l.Routes.VirtualHosts[k].Routes {
			var rok bool
			refs, rok = b.refsOf(&l.Routes.VirtualHosts[k].Routes[j].Action, refs)
			ok = ok && rok
		}
	}
	return refs, ok
}

// refsOf appends to refs the positions of the clusters a sends requests
// to, and reports whether every name resolved.
func (b *groupBuilder) refsOf(a *model.RouteAction, refs []int32) ([]int32, bool) {
	ok := true
	a.EachCluster(func(name string) {
		if name == "" {
			return
		}
		if i := b.names.find(name); i >= 0 {
			refs = append(refs, int32(i))
		} else {
			ok = false
		}
	})
	return refs, ok
}

// mark records the clusters at refs as used by the group.
func (b *groupBuilder) mark(refs []int32) {
	for _, i := range refs {
		b.used[i] = true
	}
}

// routeCount is the number of routes in rc.
func routeCount(rc *model.RouteConfig) int {
	n := 0
	for i := range rc.VirtualHosts {
		n += len(rc.VirtualHosts[i].Routes)
	}
	return n
}
