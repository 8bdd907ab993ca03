// Package xds turns the model (the IR) into Envoy xDS v3 resources. The
// builders are pure functions, one file per resource kind, with
// deterministic output (inputs are sorted by the model; outputs follow that
// order). ForGroup gathers everything one node group receives and checks
// every resource with ValidateAll; ForNode is the same for a node, and is
// what both the server and `maestro validate --output` call. Translation
// is the plain composition of the builders (groupBuilder); a Cache puts
// one layer between them (reuse.go), which hands back what an earlier
// translation built from an equal model object.
package xds

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// ErrUnknownNode is returned by ForNode when no group matches the node.
var ErrUnknownNode = errors.New("no node group matches the node")

// Types returns the xDS resource types a group receives, in
// make-before-break order: what is referenced comes before what references
// it.
func Types() []resource.Type {
	return []resource.Type{
		resource.SecretType,
		resource.ClusterType,
		resource.EndpointType,
		resource.ExtensionConfigType,
		resource.RouteType,
		resource.ListenerType,
	}
}

// Resources is everything one node group receives: the xDS resources by
// type in a deterministic order (clusters, endpoints and secrets sorted by
// name; listeners sorted, routes and filter configs in listener order), and
// a content version per resource (a hash of its deterministic encoding, so
// it is stable across rebuilds and changes only when the resource does)
// for delta xDS: Versions[t][i] is the version of Items[t][i].
type Resources struct {
	Items    map[resource.Type][]types.Resource
	Versions map[resource.Type][]string
}

// encode appends m's deterministic encoding (maps in key order, so equal
// resources encode, and hash, equally) to buf.
func encode(buf []byte, m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, m)
}

// validator is what every generated resource implements.
type validator interface{ ValidateAll() error }

// ForNode returns the resources for the node's group in m.
//
// # Errors
//
// ErrUnknownNode if no group matches; otherwise as ForGroup.
func ForNode(m *model.Mesh, node model.NodeInfo) (*Resources, error) {
	name, ok := m.GroupFor(node)
	if !ok {
		return nil, fmt.Errorf("node %q role %q service %q: %w", node.ID, node.Role, node.Service, ErrUnknownNode)
	}
	return ForGroup(m, name)
}

// ForGroup builds and validates the resources of group name.
//
// # Errors
//
// An unknown group, a reference to a missing object, or a resource failing
// ValidateAll (the error names the resource's type and name).
func ForGroup(m *model.Mesh, name string) (*Resources, error) {
	return forGroup(m, name, &memo{})
}

// forGroup is ForGroup reusing what mem holds.
func forGroup(m *model.Mesh, name string, mem *memo) (*Resources, error) {
	g := m.Group(name)
	if g == nil {
		return nil, fmt.Errorf("group %q: %w", name, ErrUnknownNode)
	}
	b := &groupBuilder{mesh: m, group: g, proxyless: isProxyless(g), out: newResources(), memo: mem}
	if err := b.build(); err != nil {
		return nil, fmt.Errorf("group %q: %w", name, err)
	}
	mem.keep(name, b.out)
	return b.out, nil
}

// isProxyless reports whether a group's nodes are gRPC clients or servers
// using xDS without Envoy, which take only API and gRPC server listeners
// and need gRPC's flavour of some resources (no SDS, no active health
// checks).
func isProxyless(g *model.NodeGroup) bool {
	if g.Nodes.Role == model.RoleProxyless {
		return true
	}
	return len(g.Listeners) > 0 && !slices.ContainsFunc(g.Listeners, func(l model.Listener) bool { return !l.InlineRoutes() })
}

func newResources() *Resources {
	return &Resources{Items: map[resource.Type][]types.Resource{}, Versions: map[resource.Type][]string{}}
}

// add appends res (named name) after validating it, versioned by a hash of
// its deterministic encoding: the version moves exactly when what the
// client receives does.
func (r *Resources) add(t resource.Type, name string, res types.Resource) error {
	v, err := (*scratch)(nil).version(t, name, res)
	if err != nil {
		return err
	}
	r.addBuilt(t, built{res, v})
	return nil
}

// addBuilt appends a resource already validated and versioned.
func (r *Resources) addBuilt(t resource.Type, b built) {
	r.Items[t] = append(r.Items[t], b.res)
	r.Versions[t] = append(r.Versions[t], b.v)
}

// typeName is the short name of an xDS type used in errors and file names.
func typeName(t resource.Type) string {
	switch t {
	case resource.ListenerType:
		return "listener"
	case resource.RouteType:
		return "route"
	case resource.ClusterType:
		return "cluster"
	case resource.EndpointType:
		return "endpoint"
	case resource.SecretType:
		return "secret"
	case resource.ExtensionConfigType:
		return "extension_config"
	}
	return t
}

// TypeName returns the short name of an xDS type ("listener", "route",
// "cluster", "endpoint", "secret", "extension_config").
func TypeName(t resource.Type) string { return typeName(t) }

// groupBuilder holds the state of one ForGroup call: the translation of
// a group is the composition of the pure builders, each resource going
// through the memo, which hands back what an earlier translation built
// from an equal model object.
type groupBuilder struct {
	mesh      *model.Mesh
	group     *model.NodeGroup
	proxyless bool
	out       *Resources
	memo      *memo
	// next is where find looks first; index finds clusters by name in a
	// mesh whose clusters are not sorted, built on first need.
	next  int
	index map[string]int
}

func (b *groupBuilder) build() error {
	var errs []error
	b.out.Items[resource.ListenerType] = make([]types.Resource, 0, len(b.group.Listeners))
	b.out.Versions[resource.ListenerType] = make([]string, 0, len(b.group.Listeners))
	for i := range b.group.Listeners {
		if err := b.listener(i); err != nil {
			errs = append(errs, err)
		}
	}
	clusters, secrets, err := b.references()
	if err != nil {
		errs = append(errs, err)
	}
	// Clusters and endpoints are the bulk of a large mesh: gather them in
	// columns, which hand back the group's previous slices when nothing
	// in them changed.
	last := b.memo.last(b.group.Name)
	cds := column{prev: last.Items[resource.ClusterType], prevV: last.Versions[resource.ClusterType], size: len(clusters)}
	eds := column{prev: last.Items[resource.EndpointType], prevV: last.Versions[resource.EndpointType], size: len(clusters)}
	for _, i := range clusters {
		cl, err := b.memo.cluster(b.mesh.Clusters, i, b.proxyless)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cds.add(cl.cds)
		if cl.eds != nil {
			eds.add(*cl.eds)
		}
	}
	b.out.Items[resource.ClusterType], b.out.Versions[resource.ClusterType] = cds.result()
	b.out.Items[resource.EndpointType], b.out.Versions[resource.EndpointType] = eds.result()
	for _, name := range secrets {
		if err := b.secret(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// listener adds l's listener, its route configuration when served over RDS,
// and its filters' configurations.
func (b *groupBuilder) listener(i int) error {
	l := &b.group.Listeners[i]
	var tracing *model.Tracing
	if !b.proxyless {
		tracing = b.mesh.Tracing
	}
	ln, err := b.memo.listener(b.group, i, tracing)
	if err != nil {
		return err
	}
	b.out.addBuilt(resource.ListenerType, ln)
	if !l.InlineRoutes() {
		rc, err := b.memo.routeConfiguration(b.group.Name, l)
		if err != nil {
			return err
		}
		b.out.addBuilt(resource.RouteType, rc)
	}
	for _, f := range l.Filters {
		ec, err := FilterConfig(f, &l.Routes)
		if err != nil {
			return fmt.Errorf("filter config %q: %w", f.Name, err)
		}
		if err := b.out.add(resource.ExtensionConfigType, f.Name, ec); err != nil {
			return err
		}
	}
	return nil
}

func (b *groupBuilder) secret(name string) error {
	s := b.mesh.Secret(name)
	if s == nil {
		return fmt.Errorf("unknown secret %q", name)
	}
	return b.out.add(resource.SecretType, name, Secret(s))
}

// references returns the clusters (as indexes into the mesh's sorted
// Clusters, so in name order) and the sorted secret names that the group's
// listeners use, directly or through the clusters.
func (b *groupBuilder) references() (clusters []int, secrets []string, err error) {
	w := &b.memo.work
	used := zeroed(w.used, len(b.mesh.Clusters))
	var unknown []string
	mark := func(name string) {
		if name == "" {
			return
		}
		if i := b.find(name); i >= 0 {
			used[i] = true
		} else {
			unknown = append(unknown, name)
		}
	}
	ss := map[string]bool{}
	for _, c := range b.group.ExtraClusters {
		mark(c)
	}
	if t := b.mesh.Tracing; t != nil && !b.proxyless {
		mark(t.Cluster)
	}
	for i := range b.group.Listeners {
		l := &b.group.Listeners[i]
		if l.TLS != nil && !b.proxyless {
			ss[l.TLS.CertSecret] = true
			ss[l.TLS.TrustSecret] = true
		}
		for _, f := range l.Filters {
			mark(f.Code.Cluster)
		}
		for _, vh := range l.Routes.VirtualHosts {
			for j := range vh.Routes {
				vh.Routes[j].Action.EachCluster(mark)
			}
		}
	}
	clusters = w.clusters[:0]
	for i, u := range used {
		if !u {
			continue
		}
		clusters = append(clusters, i)
		if c := &b.mesh.Clusters[i]; c.TLS != nil && !b.proxyless {
			ss[c.TLS.CertSecret] = true
			ss[c.TLS.TrustSecret] = true
		}
	}
	// The next group reuses the buffers: build is done with them by then.
	w.used, w.clusters = used, clusters
	delete(ss, "")
	if len(unknown) > 0 {
		slices.Sort(unknown)
		err = fmt.Errorf("unknown clusters %q", slices.Compact(unknown))
	}
	return clusters, slices.Sorted(maps.Keys(ss)), err
}

// find returns the position of the cluster named name in the mesh, or -1.
// Routes mostly name clusters in the order of the mesh's sorted list (a
// route's versions, then the next route's), so the one after the last found
// is tried first; then a binary search, and an index for a mesh that is
// not sorted (one not validated).
func (b *groupBuilder) find(name string) int {
	cs := b.mesh.Clusters
	if i := b.next; i < len(cs) && cs[i].Name == name {
		b.next++
		return i
	}
	if i, ok := slices.BinarySearchFunc(cs, name, func(c model.Cluster, n string) int {
		return strings.Compare(c.Name, n)
	}); ok {
		b.next = i + 1
		return i
	}
	if b.index == nil {
		b.index = make(map[string]int, len(cs))
		for i := range cs {
			b.index[cs[i].Name] = i
		}
	}
	if i, ok := b.index[name]; ok {
		return i
	}
	return -1
}

// zeroed returns a zeroed slice of n elements, in s's array if large enough.
func zeroed[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}
