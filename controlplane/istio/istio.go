// Package istio renders a mesh policy as Istio resources, for clusters that
// already run Istio: a DestinationRule per Service (subsets, limits, outlier
// detection, ISTIO_MUTUAL), a VirtualService per Service host (the policy
// Routes to it: matches, rules, weighted subsets, mirrors, retries,
// timeouts, faults), AuthorizationPolicy and PeerAuthentication for
// security, and WasmPlugin resources that load the fanout and slo filters
// with the same plugin configuration the native control plane serves (or,
// for the fanout filter with Options.FanoutStopIteration, an EnvoyFilter).
//
// Rendering is pure and deterministic: the same policy and Options give the
// same bytes. The policy is taken as validated by policy.Load; nothing here
// re-validates user input.
package istio

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// API versions of the rendered kinds.
const (
	NetworkingAPIVersion = "networking.istio.io/v1"
	SecurityAPIVersion   = "security.istio.io/v1"
	ExtensionsAPIVersion = "extensions.istio.io/v1alpha1"
)

// ErrNoPolicy is returned for a policy that policy.Load did not produce.
var ErrNoPolicy = errors.New("render istio resources: no policy (use policy.Load)")

// Defaults of Options.
const (
	DefaultClusterDomain = "cluster.local"
	DefaultRootNamespace = "istio-system"
	// DefaultGRPCPort and DefaultHTTPPort are the inference server's
	// Kubernetes Service ports, as in examples/k8s.
	DefaultGRPCPort = 9000
	DefaultHTTPPort = 8080
	DefaultAppLabel = "app"
)

// Options say what the policy cannot: how its services appear in
// Kubernetes. The zero value takes every default.
type Options struct {
	// ClusterDomain completes hosts: <service>.<namespace>.svc.<domain>.
	ClusterDomain string
	// RootNamespace is Istio's root namespace: the mesh-wide
	// PeerAuthentication and the WasmPlugins go there.
	RootNamespace string
	// GRPCPort and HTTPPort are the Service ports of grpc and http
	// services; they appear in destinations and Envoy cluster names.
	GRPCPort uint32
	HTTPPort uint32
	// AppLabel is the pod label whose value is the service's name; it
	// selects the workloads an AuthorizationPolicy protects.
	AppLabel string
	// WasmDir is where local filter modules are mounted in the proxies:
	// a relative policy path becomes file://<WasmDir>/<base name>.
	WasmDir string
	// FanoutStopIteration renders the fanout filter as an EnvoyFilter
	// instead of a WasmPlugin, with the Wasm config's
	// allow_on_headers_stop_iteration set, which WasmPlugin cannot set and
	// REST ensembles and shadows need: the filter holds a REST request in
	// its request-headers callback to answer it from the body, and without
	// the flag Envoy never calls its body callback. It needs proxies on
	// Envoy 1.35 or later and an istiod whose Envoy API knows the field.
	FanoutStopIteration bool
}

func (o Options) withDefaults() Options {
	if o.ClusterDomain == "" {
		o.ClusterDomain = DefaultClusterDomain
	}
	if o.RootNamespace == "" {
		o.RootNamespace = DefaultRootNamespace
	}
	if o.GRPCPort == 0 {
		o.GRPCPort = DefaultGRPCPort
	}
	if o.HTTPPort == 0 {
		o.HTTPPort = DefaultHTTPPort
	}
	if o.AppLabel == "" {
		o.AppLabel = DefaultAppLabel
	}
	if o.WasmDir == "" {
		o.WasmDir = policy.DefaultWasmDir
	}
	return o
}

// Resource is one rendered Istio object: its type, its name and its spec,
// an istio.io/api message.
type Resource struct {
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	Spec       proto.Message
}

// Render turns a loaded policy into Istio resources in a fixed order:
// PeerAuthentication, DestinationRules, VirtualServices,
// AuthorizationPolicies, WasmPlugins, each sorted by namespace and name.
//
// # Errors
//
// ErrNoPolicy for a nil or unloaded policy; otherwise only a filter
// configuration that its own Validate rejects, which means a bug in the
// translation rather than in the policy.
func Render(pm *policy.Mesh, opts Options) ([]Resource, error) {
	if pm == nil || pm.Config == nil {
		return nil, ErrNoPolicy
	}
	r := &renderer{pm: pm, opts: opts.withDefaults()}
	out := []Resource{r.peerAuthentication()}
	out = append(out, r.destinationRules()...)
	vss, routes := r.virtualServices()
	out = append(out, vss...)
	out = append(out, r.authorizationPolicies()...)
	plugins, err := r.wasmPlugins(routes)
	if err != nil {
		return nil, err
	}
	return append(out, plugins...), nil
}

// renderer holds what every builder reads; it is never written after
// construction.
type renderer struct {
	pm   *policy.Mesh
	opts Options
}

// Host returns the fully qualified Kubernetes host of a service.
func Host(name, namespace, clusterDomain string) string {
	return name + "." + namespace + ".svc." + clusterDomain
}

// ClusterName is Envoy's name for an Istio subset cluster:
// outbound|<port>|<subset>|<host>.
func ClusterName(port uint32, subset, host string) string {
	return "outbound|" + strconv.FormatUint(uint64(port), 10) + "|" + subset + "|" + host
}

func (r *renderer) host(service string) string {
	s := r.pm.Service(service)
	if s == nil {
		return service
	}
	return Host(s.Metadata.Name, namespaceOf(s.Metadata), r.opts.ClusterDomain)
}

// port is the Service port of a service: gRPC or REST by its protocol.
func (r *renderer) port(service string) uint32 {
	if s := r.pm.Service(service); s != nil && s.Spec.Protocol == policy.ProtocolHTTP {
		return r.opts.HTTPPort
	}
	return r.opts.GRPCPort
}

func (r *renderer) cluster(service, version string) string {
	return ClusterName(r.port(service), version, r.host(service))
}

func namespaceOf(m policy.Metadata) string {
	if m.Namespace == "" {
		return "default"
	}
	return m.Namespace
}

// principal is an Istio source principal: a SPIFFE ID without its scheme.
func principal(spiffeID string) string {
	return strings.TrimPrefix(spiffeID, "spiffe://")
}

func sortResources(rs []Resource) {
	slices.SortStableFunc(rs, func(a, b Resource) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
}
