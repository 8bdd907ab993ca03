package xds

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// Cache remembers the resources built from model objects so that the next
// translation reuses those whose model object is unchanged (compared with
// the model's Equal methods) instead of building, validating and hashing
// them again. The output is identical with or without a cache.
//
// What one translation built is stored by position, aligned with its mesh's
// clusters and its groups' listeners and routes, rather than in maps keyed
// by name: the next mesh mostly has the same objects at the same positions,
// so finding an object's previous entry costs a string comparison, not a
// hash, and forgetting what the new mesh no longer uses costs nothing.
//
// The model values handed to a Cache must not be modified afterwards (the
// cache keeps them to compare against). A Cache is not safe for concurrent
// use: a snapshot.Translator owns one and serialises its calls.
type Cache struct {
	// last is what the translation before the last Sweep built; cur is
	// what the translation in progress builds.
	last, cur *meshState
	// spare holds only the tables of the state before last (emptied),
	// which the next state reuses rather than allocating its own.
	spare *meshState
	// work holds the buffers of the Envoy and the proxyless flavour,
	// which ForGroups translates concurrently.
	work [2]scratch
}

// scratch is what building resources reuses from one resource to the next:
// one per goroutine. A nil *scratch allocates afresh.
type scratch struct {
	parts clusterParts
	// buf is reused to encode resources for their versions.
	buf []byte
	// used, marked and clusters are a group's flags and list of used
	// clusters (see groupBuilder), needed only while it is built: in a
	// large mesh, new ones for every group and change would be a good
	// share of what a change allocates.
	used, marked []bool
	clusters     []int
}

// flavour indexes the cache's per-flavour tables.
func flavour(proxyless bool) int {
	if proxyless {
		return 1
	}
	return 0
}

type builtCluster struct {
	cluster, endpoints types.Resource
	clusterV, edsV     string
}

type builtListener struct {
	tracing *model.Tracing
	res     types.Resource
	v       string
	// fault is hasFault of the listener's routes, which the resource of
	// an RDS listener depends on (see sameListener).
	fault bool
	// refs are the positions, in the entry's mesh, of the clusters the
	// listener's inline routes send to; refsOK is false if a name did not
	// resolve (the group then reports it by walking the names).
	refs   []int32
	refsOK bool
}

type builtRoute struct {
	route *routev3.Route
	v     uint64
	// refs and refsOK as in builtListener, for this route's action.
	refs   []int32
	refsOK bool
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{} }

// ForGroup is the package-level ForGroup, reusing what the cache holds.
func (c *Cache) ForGroup(m *model.Mesh, name string) (*Resources, error) {
	return forGroup(m, name, c, &c.work[0])
}

// ForGroups builds the resources of every group of m, as ForGroup does for
// each; res[i] and errs[i] are those of m.Groups[i]. Groups of Envoy nodes
// and groups of proxyless gRPC clients are translated concurrently (each
// flavour has its own part of the cache), which on two cores takes about
// half the time of one group after the other. The output does not depend
// on the schedule.
//
// # Errors
//
// errs[i] is what ForGroup returns for the group, or ctx's error if ctx
// ended before the group was translated.
func (c *Cache) ForGroups(ctx context.Context, m *model.Mesh) (res []*Resources, errs []error) {
	res, errs = make([]*Resources, len(m.Groups)), make([]error, len(m.Groups))
	if _, err := c.prepare(ctx, m); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return res, errs
	}
	var byFlavour [2][]int
	names := make(map[string]bool, len(m.Groups))
	for i := range m.Groups {
		f := flavour(isProxyless(&m.Groups[i]))
		byFlavour[f] = append(byFlavour[f], i)
		names[m.Groups[i].Name] = true
	}
	if len(names) != len(m.Groups) {
		// Groups sharing a name (a mesh that is not valid) would share
		// their state: translate them one after the other.
		byFlavour = [2][]int{append(byFlavour[0], byFlavour[1]...)}
		slices.Sort(byFlavour[0])
	}
	g, ctx := errgroup.WithContext(ctx)
	for f, groups := range byFlavour {
		g.Go(func() error {
			for _, i := range groups {
				if err := ctx.Err(); err != nil {
					errs[i] = err
					continue
				}
				res[i], errs[i] = forGroup(m, m.Groups[i].Name, c, &c.work[f])
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through errs
	return res, errs
}

// Sweep forgets everything the groups translated since the previous Sweep
// did not use; call it after translating every group of a mesh.
func (c *Cache) Sweep() {
	c.spare, c.last, c.cur = c.last.tables(), c.cur, nil
}

// addBuilt appends a resource already validated and versioned.
func (r *Resources) addBuilt(t resource.Type, _, v string, res types.Resource) {
	r.Items[t] = append(r.Items[t], res)
	r.Versions[t] = append(r.Versions[t], v)
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

// cluster returns the CDS and EDS resources of m.Clusters[i] with their
// versions, rebuilding only the part whose model changed. A DNS cluster has
// no EDS resource: endpoints is nil.
func (c *Cache) cluster(w *scratch, m *model.Mesh, i int, proxyless bool) (*builtCluster, error) {
	mc := &m.Clusters[i]
	f := flavour(proxyless)
	var st *meshState
	var prev *builtCluster
	var prevIR *model.Cluster
	if c != nil {
		st = c.state(m)
		if e := st.clusters[f][i]; e != nil {
			return e, nil
		}
		if j := positionIn(st.lastPos, i); j >= 0 {
			prev, prevIR = c.last.clusters[f][j], &c.last.mesh.Clusters[j]
		}
		if prev != nil && st.sameAsLast(i, prevIR) {
			st.clusters[f][i] = prev
			return prev, nil
		}
		if flavourFree(mc) {
			if e := st.shared[i].Load(); e != nil {
				st.clusters[f][i] = e
				return e, nil
			}
		}
	}
	out := &builtCluster{}
	// A DNS cluster carries its endpoints, so only an EDS cluster survives
	// an endpoint change.
	if prev != nil && prevIR.EqualSettings(mc) && IsEDS(mc) && IsEDS(prevIR) {
		out.cluster, out.clusterV = prev.cluster, prev.clusterV
	} else {
		parts := &clusterParts{}
		if w != nil {
			parts = &w.parts
		}
		cl, err := parts.cluster(mc, proxyless)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", mc.Name, err)
		}
		if out.clusterV, err = w.version(resource.ClusterType, mc.Name, cl); err != nil {
			return nil, err
		}
		out.cluster = cl
	}
	if IsEDS(mc) {
		eds := Endpoints(mc)
		v, err := w.version(resource.EndpointType, mc.Name, eds)
		if err != nil {
			return nil, err
		}
		out.endpoints, out.edsV = eds, v
	}
	if st != nil {
		// The other flavour may have built the same resources in the
		// meantime: either copy will do (they are equal), keep one.
		if flavourFree(mc) && !st.shared[i].CompareAndSwap(nil, out) {
			out = st.shared[i].Load()
		}
		st.clusters[f][i] = out
	}
	return out, nil
}

// flavourFree reports whether c's cluster and endpoint resources are the
// same for Envoy and for proxyless gRPC clients: an EDS cluster (a DNS
// cluster's kind depends on the flavour) with neither TLS (SDS secrets or
// gRPC certificate providers) nor an active health check (left out for
// gRPC). See clusterParts.cluster.
func flavourFree(c *model.Cluster) bool {
	return IsEDS(c) && c.TLS == nil && c.HealthCheck == nil
}

// positionIn returns pos[i], or -1 when there is no previous state.
func positionIn(pos []int32, i int) int {
	if pos == nil {
		return -1
	}
	return int(pos[i])
}

// buildRoute builds the Envoy route of r, validated, and its content hash.
func (w *scratch) buildRoute(r *model.Route) (*routev3.Route, uint64, error) {
	rt, err := Route(r, false)
	if err != nil {
		return nil, 0, fmt.Errorf("route %q: %w", r.Name, err)
	}
	if err := rt.ValidateAll(); err != nil {
		return nil, 0, fmt.Errorf("route %q: %w", r.Name, err)
	}
	var buf []byte
	if w != nil {
		buf = w.buf[:0]
	}
	b, err := encode(buf, rt)
	if err != nil {
		return nil, 0, fmt.Errorf("route %q: encode: %w", r.Name, err)
	}
	if w != nil {
		w.buf = b
	}
	return rt, xxhash.Sum64(b), nil
}

// buildListener builds the LDS resource of l (with tracing, if set) and its
// version.
func (w *scratch) buildListener(l *model.Listener, tracing *model.Tracing) (*builtListener, error) {
	ln, err := Listener(l, tracing)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", l.Name, err)
	}
	v, err := w.version(resource.ListenerType, l.Name, ln)
	if err != nil {
		return nil, err
	}
	var t *model.Tracing
	if tracing != nil {
		copied := *tracing
		t = &copied
	}
	return &builtListener{tracing: t, res: ln, v: v, fault: hasFault(&l.Routes)}, nil
}

func tracingEqual(a, b *model.Tracing) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
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
