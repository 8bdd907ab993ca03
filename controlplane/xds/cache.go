package xds

import (
	"fmt"
	"strconv"

	"github.com/cespare/xxhash/v2"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// Cache remembers the resources built from model objects so that the next
// translation reuses those whose model object is unchanged (compared with
// the model's Equal methods) instead of building, validating and hashing
// them again. The output is identical with or without a cache.
//
// The model values handed to a Cache must not be modified afterwards (the
// cache keeps them to compare against). A Cache is not safe for concurrent
// use: a snapshot.Translator owns one and serialises its calls.
type Cache struct {
	gen uint64
	// indexed is the mesh index was built for.
	indexed *model.Mesh
	index   map[string]int
	// clusters and routes are indexed by flavour (0 for Envoy, 1 for
	// proxyless gRPC) then by name.
	clusters [2]map[string]*builtCluster
	// Keys are pairs (scope or group, name), not concatenations: a
	// lookup then allocates nothing, and there are 10,000s per change.
	routes [2]map[[2]string]*builtRoute
	// listeners are keyed by group and name.
	listeners map[[2]string]*builtListener
	parts     clusterParts
	// buf is reused to encode resources for their versions.
	buf []byte
}

// flavour indexes the cache's maps.
func flavour(proxyless bool) int {
	if proxyless {
		return 1
	}
	return 0
}

type builtCluster struct {
	ir                 *model.Cluster
	cluster, endpoints types.Resource
	clusterV, edsV     string
	used               uint64
}

type builtListener struct {
	ir      *model.Listener
	tracing *model.Tracing
	res     types.Resource
	v       string
	used    uint64
}

type builtRoute struct {
	ir    *model.Route
	route *routev3.Route
	v     uint64
	used  uint64
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	c := &Cache{listeners: map[[2]string]*builtListener{}}
	for i := range c.clusters {
		c.clusters[i] = map[string]*builtCluster{}
		c.routes[i] = map[[2]string]*builtRoute{}
	}
	return c
}

// ForGroup is the package-level ForGroup, reusing what the cache holds.
func (c *Cache) ForGroup(m *model.Mesh, name string) (*Resources, error) {
	return forGroup(m, name, c)
}

// clusterIndex maps cluster names to their index in m.Clusters, built once
// per mesh when there is a cache.
func (c *Cache) clusterIndex(m *model.Mesh) map[string]int {
	if c != nil && c.indexed == m {
		return c.index
	}
	index := make(map[string]int, len(m.Clusters))
	for i := range m.Clusters {
		index[m.Clusters[i].Name] = i
	}
	if c != nil {
		c.indexed, c.index = m, index
	}
	return index
}

// Sweep forgets everything not used since the previous Sweep; call it
// after translating every group of a mesh.
func (c *Cache) Sweep() {
	for f := range c.clusters {
		for k, e := range c.clusters[f] {
			if e.used != c.gen {
				delete(c.clusters[f], k)
			}
		}
		for k, e := range c.routes[f] {
			if e.used != c.gen {
				delete(c.routes[f], k)
			}
		}
	}
	for k, e := range c.listeners {
		if e.used != c.gen {
			delete(c.listeners, k)
		}
	}
	c.indexed, c.index = nil, nil
	c.gen++
}

// addBuilt appends a resource already validated and versioned.
func (r *Resources) addBuilt(t resource.Type, _, v string, res types.Resource) {
	r.Items[t] = append(r.Items[t], res)
	r.Versions[t] = append(r.Versions[t], v)
}

// version validates res and returns the hash of its deterministic encoding.
func (c *Cache) version(t resource.Type, name string, res types.Resource) (string, error) {
	if val, ok := res.(validator); ok {
		if err := val.ValidateAll(); err != nil {
			return "", fmt.Errorf("%s %q: %w", typeName(t), name, err)
		}
	}
	var buf []byte
	if c != nil {
		buf = c.buf[:0]
	}
	b, err := encode(buf, res)
	if err != nil {
		return "", fmt.Errorf("%s %q: encode: %w", typeName(t), name, err)
	}
	if c != nil {
		c.buf = b
	}
	return strconv.FormatUint(xxhash.Sum64(b), 16), nil
}

// cluster returns the CDS and EDS resources of c with their versions,
// rebuilding only the part whose model changed. A DNS cluster has no EDS
// resource: endpoints is nil.
func (c *Cache) cluster(mc *model.Cluster, proxyless bool) (*builtCluster, error) {
	var e *builtCluster
	if c != nil {
		e = c.clusters[flavour(proxyless)][mc.Name]
	}
	if e != nil && e.ir.Equal(mc) {
		e.used = c.gen
		return e, nil
	}
	out := &builtCluster{ir: mc}
	// A DNS cluster carries its endpoints, so only an EDS cluster survives
	// an endpoint change.
	if e != nil && e.ir.EqualSettings(mc) && IsEDS(mc) && IsEDS(e.ir) {
		out.cluster, out.clusterV = e.cluster, e.clusterV
	} else {
		parts := &clusterParts{}
		if c != nil {
			parts = &c.parts
		}
		cl, err := parts.cluster(mc, proxyless)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", mc.Name, err)
		}
		if out.clusterV, err = c.version(resource.ClusterType, mc.Name, cl); err != nil {
			return nil, err
		}
		out.cluster = cl
	}
	if IsEDS(mc) {
		eds := Endpoints(mc)
		v, err := c.version(resource.EndpointType, mc.Name, eds)
		if err != nil {
			return nil, err
		}
		out.endpoints, out.edsV = eds, v
	}
	if c != nil {
		out.used = c.gen
		c.clusters[flavour(proxyless)][mc.Name] = out
	}
	return out, nil
}

// route returns the Envoy route of r (validated) and its content hash.
func (c *Cache) route(scope string, r *model.Route, proxyless bool) (*routev3.Route, uint64, error) {
	key := [2]string{scope, r.Name}
	if c != nil {
		if e := c.routes[flavour(proxyless)][key]; e != nil && e.ir.Equal(r) {
			e.used = c.gen
			return e.route, e.v, nil
		}
	}
	rt, err := Route(r, proxyless)
	if err != nil {
		return nil, 0, fmt.Errorf("route %q: %w", r.Name, err)
	}
	if err := rt.ValidateAll(); err != nil {
		return nil, 0, fmt.Errorf("route %q: %w", r.Name, err)
	}
	var buf []byte
	if c != nil {
		buf = c.buf[:0]
	}
	b, err := encode(buf, rt)
	if err != nil {
		return nil, 0, fmt.Errorf("route %q: encode: %w", r.Name, err)
	}
	if c != nil {
		c.buf = b
	}
	v := xxhash.Sum64(b)
	if c != nil {
		c.routes[flavour(proxyless)][key] = &builtRoute{ir: r, route: rt, v: v, used: c.gen}
	}
	return rt, v, nil
}

// listener returns the LDS resource of l (with tracing, if set) and its
// version, rebuilt only when l or the tracing settings changed. A group of
// proxyless clients has one API listener, with its routes inline, per
// target: thousands in a large mesh.
func (c *Cache) listener(group string, l *model.Listener, tracing *model.Tracing) (types.Resource, string, error) {
	key := [2]string{group, l.Name}
	if c != nil {
		if e := c.listeners[key]; e != nil && e.ir.Equal(l) && tracingEqual(e.tracing, tracing) {
			e.used = c.gen
			return e.res, e.v, nil
		}
	}
	ln, err := Listener(l, tracing)
	if err != nil {
		return nil, "", fmt.Errorf("listener %q: %w", l.Name, err)
	}
	v, err := c.version(resource.ListenerType, l.Name, ln)
	if err != nil {
		return nil, "", err
	}
	if c != nil {
		var t *model.Tracing
		if tracing != nil {
			copied := *tracing
			t = &copied
		}
		c.listeners[key] = &builtListener{ir: l, tracing: t, res: ln, v: v, used: c.gen}
	}
	return ln, v, nil
}

func tracingEqual(a, b *model.Tracing) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// routeConfiguration builds the RDS resource of rc from cached routes. Each
// route is validated when built; the configuration and its virtual hosts
// are validated without their routes, and the version combines the routes'
// hashes, so an unchanged route costs neither validation nor encoding.
func (c *Cache) routeConfiguration(group string, rc *model.RouteConfig) (*routev3.RouteConfiguration, string, error) {
	out := &routev3.RouteConfiguration{Name: rc.Name}
	if err := out.ValidateAll(); err != nil {
		return nil, "", fmt.Errorf("route %q: %w", rc.Name, err)
	}
	h := xxhash.New()
	if err := hashShell(h, out); err != nil {
		return nil, "", err
	}
	out.VirtualHosts = make([]*routev3.VirtualHost, 0, len(rc.VirtualHosts))
	for i := range rc.VirtualHosts {
		mvh := &rc.VirtualHosts[i]
		vh := &routev3.VirtualHost{Name: mvh.Name, Domains: mvh.Domains}
		if err := vh.ValidateAll(); err != nil {
			return nil, "", fmt.Errorf("route %q: virtual host %q: %w", rc.Name, mvh.Name, err)
		}
		if err := hashShell(h, vh); err != nil {
			return nil, "", err
		}
		vh.Routes = make([]*routev3.Route, 0, len(mvh.Routes))
		scope := group + "\x00" + rc.Name + "\x00" + mvh.Name
		for j := range mvh.Routes {
			rt, v, err := c.route(scope, &mvh.Routes[j], false)
			if err != nil {
				return nil, "", fmt.Errorf("route %q: virtual host %q: %w", rc.Name, mvh.Name, err)
			}
			vh.Routes = append(vh.Routes, rt)
			_, _ = h.Write(strconv.AppendUint(nil, v, 16))
		}
		out.VirtualHosts = append(out.VirtualHosts, vh)
	}
	return out, strconv.FormatUint(h.Sum64(), 16), nil
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
