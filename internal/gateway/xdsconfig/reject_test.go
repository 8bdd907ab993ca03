package xdsconfig

import (
	"errors"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func baseRoute() *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: "edge", VirtualHosts: []*routev3.VirtualHost{{Name: "edge", Domains: []string{"*"},
		Routes: []*routev3.Route{{Name: "fraud", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "fraud.v1"}}}}}}}}
}

// withFilterConfig is baseRoute with fc as the route's config of the
// filter edge.fanout.
func withFilterConfig(fc *routev3.FilterConfig) *routev3.RouteConfiguration {
	rc := baseRoute()
	a, _ := anypb.New(fc)
	rc.VirtualHosts[0].Routes[0].TypedPerFilterConfig = map[string]*anypb.Any{"edge.fanout": a}
	return rc
}

func action(rc *routev3.RouteConfiguration) *routev3.RouteAction {
	return rc.VirtualHosts[0].Routes[0].GetRoute()
}

// TestRejectsNameTheField lists configs with a field the gateway lacks (or
// a value it cannot honour) and the error each must give.
func TestRejectsNameTheField(t *testing.T) {
	tests := map[string]struct {
		msg  func() proto.Message
		want string
	}{
		"mirror trace_sampled": {func() proto.Message {
			rc := baseRoute()
			action(rc).RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "fraud.logistic", TraceSampled: wrapperspb.Bool(true)}}
			return rc
		}, `route config "edge": field virtual_hosts[edge].routes[fraud].route.request_mirror_policies[0].trace_sampled unsupported`},
		"hash policy": {func() proto.Message {
			rc := baseRoute()
			action(rc).HashPolicy = []*routev3.RouteAction_HashPolicy{{}}
			return rc
		}, `route config "edge": field virtual_hosts[edge].routes[fraud].route.hash_policy unsupported`},
		"retry back-off": {func() proto.Message {
			rc := baseRoute()
			action(rc).RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx", RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(time.Second)}}
			return rc
		}, `route config "edge": field virtual_hosts[edge].routes[fraud].route.retry_policy.retry_back_off unsupported`},
		"unknown retry condition": {func() proto.Message {
			rc := baseRoute()
			action(rc).RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx,envoy-ratelimited"}
			return rc
		}, `route config "edge": field virtual_hosts[edge].routes[fraud].route.retry_policy.retry_on condition "envoy-ratelimited" unsupported`},
		"separated prefix with a trailing slash": {func() proto.Message {
			rc := baseRoute()
			rc.VirtualHosts[0].Routes[0].Match.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/v2/models/"}
			return rc
		}, `route config "edge": field virtual_hosts[edge].routes[fraud].match.path_separated_prefix "/v2/models/" must not end with / nor hold ? or #`},
		"per-filter config of another type": {func() proto.Message {
			rc := baseRoute()
			a, _ := anypb.New(&typev3.Percent{Value: 1})
			rc.VirtualHosts[0].Routes[0].TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.fault": a}
			return rc
		}, `route config "edge": field virtual_hosts[edge].routes[fraud].typed_per_filter_config[envoy.filters.http.fault] type envoy.type.v3.Percent unsupported`},
		"per-filter FilterConfig is_optional": {func() proto.Message {
			return withFilterConfig(&routev3.FilterConfig{Disabled: true, IsOptional: true})
		}, `route config "edge": field virtual_hosts[edge].routes[fraud].typed_per_filter_config[edge.fanout].is_optional unsupported`},
		"per-filter FilterConfig config": {func() proto.Message {
			cfg, _ := anypb.New(&typev3.Percent{Value: 1})
			return withFilterConfig(&routev3.FilterConfig{Disabled: true, Config: cfg})
		}, `route config "edge": field virtual_hosts[edge].routes[fraud].typed_per_filter_config[edge.fanout].config unsupported`},
		"per-filter FilterConfig that does not disable": {func() proto.Message {
			return withFilterConfig(&routev3.FilterConfig{})
		}, `route config "edge": field virtual_hosts[edge].routes[fraud].typed_per_filter_config[edge.fanout].disabled false unsupported (only disabled: true is implemented)`},
		"virtual host per-filter config": {func() proto.Message {
			rc := baseRoute()
			a, _ := anypb.New(&routev3.FilterConfig{Disabled: true})
			rc.VirtualHosts[0].TypedPerFilterConfig = map[string]*anypb.Any{"edge.fanout": a}
			return rc
		}, `route config "edge": field virtual_hosts[edge].typed_per_filter_config unsupported`},
		"cluster lb policy": {func() proto.Message {
			return &clusterv3.Cluster{Name: "fraud.v1", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
				LbPolicy: clusterv3.Cluster_LEAST_REQUEST}
		}, `cluster "fraud.v1": field lb_policy unsupported`},
		"cluster type": {func() proto.Message {
			return &clusterv3.Cluster{Name: "x", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}}
		}, `cluster "x": field type ORIGINAL_DST unsupported`},
		"health check event log": {func() proto.Message {
			return &clusterv3.Cluster{Name: "x", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
				HealthChecks: []*corev3.HealthCheck{{EventLogPath: "/tmp/hc"}}}
		}, `cluster "x": field health_checks[0].event_log_path unsupported`},
	}
	for name, tc := range tests {
		_, err := DecodeMessage(tc.msg())
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: got %v, want %s", name, err, tc.want)
		}
		if err != nil && !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v is not ErrUnsupported", name, err)
		}
	}
}
