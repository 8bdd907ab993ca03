package xds

import (
	"errors"
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/maestro-ml/maestro/controlplane/model"
)

const (
	// defaultConnectTimeout is used when the model leaves it unset; Envoy's
	// own default (5 s) is kept explicit so the golden files show it.
	defaultConnectTimeout = 5 * time.Second
	// httpProtocolOptions is the extension key of upstream HTTP options.
	httpProtocolOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// ErrProxylessHostNames is returned for a cluster that proxyless gRPC
// clients use and that has a host-name endpoint among several endpoints:
// gRPC-Go resolves host names only in LOGICAL_DNS clusters, which take
// exactly one endpoint (it does not implement STRICT_DNS).
var ErrProxylessHostNames = errors.New("proxyless gRPC accepts a host-name endpoint only as its cluster's single endpoint (LOGICAL_DNS)")

// discovery returns how clients find c's endpoints. IP-only clusters use
// EDS (endpoints can change without touching the cluster). Envoy rejects
// host names in EDS, so a cluster with one is STRICT_DNS for Envoy (every
// address resolved, all endpoints kept with their weights) and
// LOGICAL_DNS for proxyless gRPC, the only DNS kind gRPC-Go supports.
func discovery(c *model.Cluster, proxyless bool) (clusterv3.Cluster_DiscoveryType, error) {
	switch {
	case !c.HasHostNames():
		return clusterv3.Cluster_EDS, nil
	case !proxyless:
		return clusterv3.Cluster_STRICT_DNS, nil
	case c.EndpointCount() != 1:
		return 0, fmt.Errorf("%d endpoints: %w", c.EndpointCount(), ErrProxylessHostNames)
	}
	return clusterv3.Cluster_LOGICAL_DNS, nil
}

// IsEDS reports whether c is built as an EDS cluster (with an endpoint
// resource of the same name) rather than a DNS cluster with its endpoints
// inline.
func IsEDS(c *model.Cluster) bool { return !c.HasHostNames() }

// Cluster creates a cluster from c: EDS, or a DNS cluster with its
// endpoints inline when any address is a host name (see discovery); HTTP/2
// for gRPC, with its health check, limits, outlier detection and TLS. For proxyless gRPC clients the
// TLS context names gRPC certificate providers instead of SDS secrets, and
// active health checks (which gRPC ignores) are left out.
func Cluster(c *model.Cluster, proxyless bool) (*clusterv3.Cluster, error) {
	return (&clusterParts{}).cluster(c, proxyless)
}

// clusterParts holds the sub-messages every cluster of a translation has
// in common (the ADS config source, the HTTP protocol options), built once
// and shared read-only by all of them: with tens of thousands of clusters,
// one copy each is a large share of a translation's allocations.
type clusterParts struct {
	ads     *corev3.ConfigSource
	options map[model.Protocol]map[string]*anypb.Any
}

// cluster is Cluster using (and filling) the shared parts.
func (p *clusterParts) cluster(c *model.Cluster, proxyless bool) (*clusterv3.Cluster, error) {
	if p.ads == nil {
		p.ads = adsSource()
	}
	kind, err := discovery(c, proxyless)
	if err != nil {
		return nil, err
	}
	opts, err := p.protocolOptions(c.Protocol)
	if err != nil {
		return nil, err
	}
	out := &clusterv3.Cluster{
		Name:                          c.Name,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: kind},
		ConnectTimeout:                durationpb.New(connectTimeout(c.ConnectTimeout)),
		LbPolicy:                      clusterv3.Cluster_ROUND_ROBIN,
		CircuitBreakers:               circuitBreakers(c.Limits),
		OutlierDetection:              outlierDetection(c.Outlier),
		TypedExtensionProtocolOptions: opts,
	}
	if kind == clusterv3.Cluster_EDS {
		out.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: p.ads}
	} else {
		out.LoadAssignment = Endpoints(c)
		out.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
	}
	if c.HealthCheck != nil && !proxyless {
		out.HealthChecks = []*corev3.HealthCheck{healthCheck(c.HealthCheck, c.Protocol)}
	}
	if c.TLS != nil {
		ts, err := upstreamTLS(c.TLS, proxyless)
		if err != nil {
			return nil, err
		}
		out.TransportSocket = ts
	}
	return out, nil
}

// protocolOptions returns the (shared) typed protocol options map for p.
func (p *clusterParts) protocolOptions(proto model.Protocol) (map[string]*anypb.Any, error) {
	if opts, ok := p.options[proto]; ok {
		return opts, nil
	}
	packed, err := protocolOptions(proto)
	if err != nil {
		return nil, err
	}
	if p.options == nil {
		p.options = map[model.Protocol]map[string]*anypb.Any{}
	}
	p.options[proto] = map[string]*anypb.Any{httpProtocolOptions: packed}
	return p.options[proto], nil
}

func connectTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return defaultConnectTimeout
	}
	return d
}

// protocolOptions selects HTTP/2 upstream for gRPC and HTTP/1.1 otherwise.
func protocolOptions(p model.Protocol) (*anypb.Any, error) {
	opts := &upstreamhttpv3.HttpProtocolOptions{}
	if p == model.ProtocolGRPC {
		opts.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}}
	} else {
		opts.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
		}}
	}
	return anyOf(opts)
}

// healthCheck creates an active health check: gRPC health for gRPC
// clusters, an HTTP GET of h.Path otherwise.
func healthCheck(h *model.HealthCheck, p model.Protocol) *corev3.HealthCheck {
	out := &corev3.HealthCheck{
		Interval:           durationpb.New(h.Interval),
		Timeout:            durationpb.New(h.Timeout),
		HealthyThreshold:   uint32ValueOr(h.HealthyThreshold, 1),
		UnhealthyThreshold: uint32ValueOr(h.UnhealthyThreshold, 1),
	}
	if p == model.ProtocolGRPC && h.Path == "" {
		out.HealthChecker = &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: &corev3.HealthCheck_GrpcHealthCheck{ServiceName: h.GRPCService}}
	} else {
		out.HealthChecker = &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{Path: h.Path}}
	}
	return out
}

// circuitBreakers creates the default-priority thresholds from l, or nil.
func circuitBreakers(l *model.CircuitBreaker) *clusterv3.CircuitBreakers {
	if l == nil {
		return nil
	}
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     uint32Value(l.MaxConnections),
		MaxPendingRequests: uint32Value(l.MaxPendingRequests),
		MaxRequests:        uint32Value(l.MaxRequests),
		MaxRetries:         uint32Value(l.MaxRetries),
	}}}
}

// outlierDetection creates Envoy outlier detection from o, or nil.
func outlierDetection(o *model.OutlierDetection) *clusterv3.OutlierDetection {
	if o == nil {
		return nil
	}
	return &clusterv3.OutlierDetection{
		Consecutive_5Xx:    uint32Value(o.Consecutive5xx),
		Interval:           duration(o.Interval),
		BaseEjectionTime:   duration(o.BaseEjectionTime),
		MaxEjectionPercent: uint32Value(o.MaxEjectionPercent),
	}
}
