// Package xds turns the model (the IR) into Envoy xDS v3 resources. The
// builders are pure functions, one file per resource kind, with
// deterministic output (inputs are sorted by the model; outputs follow that
// order). ForGroup gathers everything one node group receives and checks
// every resource with ValidateAll; ForNode is the same for a node, and is
// what both the server and `maestro validate --output` call.
package xds

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// ErrUnknownNode is returned by ForNode when no group matches the node.
var ErrUnknownNode = errors.New("no node group matches the node")

// Types lists the xDS resource types a group receives, in make-before-break
// order: what is referenced comes before what references it.
var Types = []resource.Type{
	resource.SecretType,
	resource.ClusterType,
	resource.EndpointType,
	resource.ExtensionConfigType,
	resource.RouteType,
	resource.ListenerType,
}

// Resources is everything one node group receives: the xDS resources by
// type, each list sorted by name, and a content version per resource (a
// hash of its deterministic encoding, so it is stable across rebuilds and
// changes only when the resource does) for delta xDS.
type Resources struct {
	Items    map[resource.Type][]types.Resource
	Versions map[resource.Type]map[string]string
}

// deterministic encodes maps in key order, so equal resources encode (and
// hash) equally.
var deterministic = proto.MarshalOptions{Deterministic: true}

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
	g := m.Group(name)
	if g == nil {
		return nil, fmt.Errorf("group %q: %w", name, ErrUnknownNode)
	}
	b := &groupBuilder{mesh: m, group: g, proxyless: isProxyless(g), out: newResources()}
	if err := b.build(); err != nil {
		return nil, fmt.Errorf("group %q: %w", name, err)
	}
	return b.out, nil
}

// isProxyless reports whether a group's nodes are gRPC clients, which take
// only API listeners and need gRPC's flavour of some resources.
func isProxyless(g *model.NodeGroup) bool {
	if g.Nodes.Role == model.RoleProxyless {
		return true
	}
	return len(g.Listeners) > 0 && !slices.ContainsFunc(g.Listeners, func(l model.Listener) bool { return l.Kind != model.ListenerAPI })
}

func newResources() *Resources {
	r := &Resources{Items: map[resource.Type][]types.Resource{}, Versions: map[resource.Type]map[string]string{}}
	for _, t := range Types {
		r.Versions[t] = map[string]string{}
	}
	return r
}

// add appends res (named name) after validating it, versioned by a hash of
// its deterministic encoding: the version moves exactly when what the
// client receives does.
func (r *Resources) add(t resource.Type, name string, res types.Resource) error {
	if val, ok := res.(validator); ok {
		if err := val.ValidateAll(); err != nil {
			return fmt.Errorf("%s %q: %w", typeName(t), name, err)
		}
	}
	b, err := deterministic.Marshal(res)
	if err != nil {
		return fmt.Errorf("%s %q: encode: %w", typeName(t), name, err)
	}
	r.Items[t] = append(r.Items[t], res)
	r.Versions[t][name] = strconv.FormatUint(xxhash.Sum64(b), 16)
	return nil
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

// groupBuilder holds the state of one ForGroup call.
type groupBuilder struct {
	mesh      *model.Mesh
	group     *model.NodeGroup
	proxyless bool
	out       *Resources
}

func (b *groupBuilder) build() error {
	var errs []error
	for i := range b.group.Listeners {
		if err := b.listener(&b.group.Listeners[i]); err != nil {
			errs = append(errs, err)
		}
	}
	clusters, secrets := b.references()
	for _, name := range clusters {
		if err := b.cluster(name); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range secrets {
		if err := b.secret(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *groupBuilder) listener(l *model.Listener) error {
	var tracing *model.Tracing
	if !b.proxyless {
		tracing = b.mesh.Tracing
	}
	ln, err := Listener(l, tracing)
	if err != nil {
		return fmt.Errorf("listener %q: %w", l.Name, err)
	}
	if err := b.out.add(resource.ListenerType, l.Name, ln); err != nil {
		return err
	}
	if l.Kind != model.ListenerAPI {
		rc, err := RouteConfiguration(&l.Routes, false)
		if err != nil {
			return fmt.Errorf("route configuration %q: %w", l.Routes.Name, err)
		}
		if err := b.out.add(resource.RouteType, rc.Name, rc); err != nil {
			return err
		}
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

func (b *groupBuilder) cluster(name string) error {
	c := b.mesh.Cluster(name)
	if c == nil {
		return fmt.Errorf("unknown cluster %q", name)
	}
	cl, err := Cluster(c, b.proxyless)
	if err != nil {
		return fmt.Errorf("cluster %q: %w", name, err)
	}
	if err := b.out.add(resource.ClusterType, name, cl); err != nil {
		return err
	}
	return b.out.add(resource.EndpointType, name, Endpoints(c))
}

func (b *groupBuilder) secret(name string) error {
	s := b.mesh.Secret(name)
	if s == nil {
		return fmt.Errorf("unknown secret %q", name)
	}
	return b.out.add(resource.SecretType, name, Secret(s))
}

// references returns the sorted names of the clusters and secrets the
// group's listeners use, directly or through the clusters.
func (b *groupBuilder) references() (clusters, secrets []string) {
	cs, ss := map[string]bool{}, map[string]bool{}
	for _, c := range b.group.ExtraClusters {
		cs[c] = true
	}
	if t := b.mesh.Tracing; t != nil && !b.proxyless {
		cs[t.Cluster] = true
	}
	for i := range b.group.Listeners {
		l := &b.group.Listeners[i]
		if l.TLS != nil {
			ss[l.TLS.CertSecret] = true
			ss[l.TLS.TrustSecret] = true
		}
		for _, f := range l.Filters {
			cs[f.Code.Cluster] = true
		}
		for _, vh := range l.Routes.VirtualHosts {
			for _, r := range vh.Routes {
				routeClusters(&r.Action, cs)
			}
		}
	}
	delete(cs, "")
	if !b.proxyless {
		for name := range cs {
			if c := b.mesh.Cluster(name); c != nil && c.TLS != nil {
				ss[c.TLS.CertSecret] = true
				ss[c.TLS.TrustSecret] = true
			}
		}
	}
	delete(ss, "")
	return sortedKeys(cs), sortedKeys(ss)
}

// routeClusters adds every cluster a route action sends requests to.
func routeClusters(a *model.RouteAction, into map[string]bool) {
	for _, w := range a.Clusters {
		into[w.Name] = true
	}
	for _, m := range a.Mirrors {
		into[m.Cluster] = true
	}
	if a.Fanout != nil {
		for _, m := range a.Fanout.Members {
			into[m.Cluster] = true
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
