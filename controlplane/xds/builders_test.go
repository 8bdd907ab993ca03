package xds_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
	"github.com/maestro-ml/maestro/controlplane/xds"
)

// diff compares protos semantically (proto.Equal, the same comparison
// protocmp makes) and shows both in text form on a mismatch.
func diff(t *testing.T, want, got proto.Message) {
	t.Helper()
	if !proto.Equal(want, got) {
		t.Errorf("got:\n%s\nwant:\n%s", prototext.Format(got), prototext.Format(want))
	}
}

func TestRouteMatch(t *testing.T) {
	tests := map[string]struct {
		in   model.RouteMatch
		want *routev3.RouteMatch
	}{
		"grpc model": {
			in: model.RouteMatch{Prefix: model.OIPModelMethodPrefix, GRPC: true, Headers: []model.HeaderMatch{{Name: "x-maestro-model", Exact: "fraud"}}},
			want: &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/inference.GRPCInferenceService/Model"},
				Grpc:          &routev3.RouteMatch_GrpcRouteMatchOptions{},
				Headers: []*routev3.HeaderMatcher{{Name: "x-maestro-model", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
					StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "fraud"}}}}},
			},
		},
		"rest model path": {
			in:   model.RouteMatch{SeparatedPrefix: "/v2/models/fraud"},
			want: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/v2/models/fraud"}},
		},
		"exact path": {
			in:   model.RouteMatch{Path: "/v2/health/ready"},
			want: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/v2/health/ready"}},
		},
		"rest prefix": {
			in:   model.RouteMatch{Prefix: "/v2/models/churn/"},
			want: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/v2/models/churn/"}},
		},
		"header kinds": {
			in: model.RouteMatch{Prefix: "/", Headers: []model.HeaderMatch{
				{Name: "x-beta", Present: true},
				{Name: "x-tenant", Prefix: "acme-", Invert: true},
				{Name: "x-build", Regex: "^[0-9]+$"},
			}},
			want: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{
				{Name: "x-beta", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}},
				{Name: "x-tenant", InvertMatch: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
					StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "acme-"}}}},
				{Name: "x-build", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
					StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "^[0-9]+$"}}}}},
			}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) { diff(t, tc.want, xds.RouteMatch(&tc.in)) })
	}
}

func TestRouteAction(t *testing.T) {
	split := []model.WeightedCluster{{Name: "fraud.v1", Weight: 90}, {Name: "fraud.v2", Weight: 10}}
	weighted := &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
		{Name: "fraud.v1", Weight: wrapperspb.UInt32(90)}, {Name: "fraud.v2", Weight: wrapperspb.UInt32(10)}}}}
	tests := map[string]struct {
		in        model.RouteAction
		proxyless bool
		want      *routev3.RouteAction
	}{
		"single cluster": {
			in:   model.RouteAction{Clusters: []model.WeightedCluster{{Name: "churn.v1", Weight: 1}}},
			want: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "churn.v1"}},
		},
		"split with mirror, retry and timeout": {
			in: model.RouteAction{Clusters: split, Timeout: 2 * time.Second,
				Mirrors: []model.Mirror{{Cluster: "fraud.v3", Percent: 12.5, RuntimeKey: "k"}, {Cluster: "fraud.v4", Percent: 5, Compare: true}},
				Retry:   &model.RetryPolicy{Attempts: 2, PerTryTimeout: time.Second, On: []string{"reset", "unavailable"}}},
			want: &routev3.RouteAction{ClusterSpecifier: weighted, Timeout: durationpb.New(2 * time.Second),
				RequestMirrorPolicies: []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "fraud.v3", RuntimeFraction: &corev3.RuntimeFractionalPercent{
					DefaultValue: &typev3.FractionalPercent{Numerator: 125_000, Denominator: typev3.FractionalPercent_MILLION}, RuntimeKey: "k"}}},
				RetryPolicy: &routev3.RetryPolicy{RetryOn: "reset,unavailable", NumRetries: wrapperspb.UInt32(2), PerTryTimeout: durationpb.New(time.Second)}},
		},
		"proxyless: max stream duration, no mirrors": {
			in:        model.RouteAction{Clusters: split, Timeout: time.Second, Mirrors: []model.Mirror{{Cluster: "fraud.v3", Percent: 50}}},
			proxyless: true,
			want: &routev3.RouteAction{ClusterSpecifier: weighted, Timeout: durationpb.New(time.Second),
				MaxStreamDuration: &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(time.Second)}},
		},
		"proxyless: no zero-retry policy": {
			in:        model.RouteAction{Clusters: []model.WeightedCluster{{Name: "a", Weight: 1}}, Retry: &model.RetryPolicy{Attempts: 0, On: []string{"unavailable"}}},
			proxyless: true,
			want:      &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "a"}},
		},
		"sequence goes to its last step": {
			in: model.RouteAction{Clusters: []model.WeightedCluster{{Name: "features.v1", Weight: 1}},
				Fanout: &model.Fanout{Sequence: true, Members: []model.FanoutMember{{Cluster: "features.v1"}, {Cluster: "churn.v1"}}}},
			want: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "churn.v1"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) { diff(t, tc.want, xds.RouteAction(&tc.in, tc.proxyless)) })
	}
}

func TestFault(t *testing.T) {
	tests := map[string]struct {
		in   model.Fault
		want *faultv3.HTTPFault
	}{
		"delay only": {
			in: model.Fault{DelayPercent: 1, Delay: 100 * time.Millisecond},
			want: &faultv3.HTTPFault{Delay: &faultcommonv3.FaultDelay{
				FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(100 * time.Millisecond)},
				Percentage:         &typev3.FractionalPercent{Numerator: 10_000, Denominator: typev3.FractionalPercent_MILLION}}},
		},
		"grpc abort": {
			in: model.Fault{AbortPercent: 0.5, AbortGRPCStatus: 14},
			want: &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_GrpcStatus{GrpcStatus: 14},
				Percentage: &typev3.FractionalPercent{Numerator: 5_000, Denominator: typev3.FractionalPercent_MILLION}}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) { diff(t, tc.want, xds.Fault(&tc.in)) })
	}
}

func TestEndpointsNeverZeroWeight(t *testing.T) {
	c := &model.Cluster{Name: "x", Localities: []model.Locality{{Region: "r", Endpoints: []model.Endpoint{{Address: "10.0.0.1", Port: 80}}}}}
	want := &endpointv3.ClusterLoadAssignment{ClusterName: "x", Endpoints: []*endpointv3.LocalityLbEndpoints{{
		Locality:            &corev3.Locality{Region: "r"},
		LoadBalancingWeight: wrapperspb.UInt32(1),
		LbEndpoints: []*endpointv3.LbEndpoint{{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80}}}}}},
			LoadBalancingWeight: wrapperspb.UInt32(1),
		}},
	}}}
	diff(t, want, xds.Endpoints(c))
}

// TestForGroupErrors holds the negative cases: each asserts its message.
func TestForGroupErrors(t *testing.T) {
	tests := map[string]struct {
		edit  func(m *model.Mesh)
		group string
		is    error
		want  string
	}{
		"unknown group": {
			group: "nope", is: xds.ErrUnknownNode, want: `group "nope": no node group matches the node`,
		},
		"unknown cluster": {
			edit: func(m *model.Mesh) {
				m.Group(modeltest.SidecarGroup).Listeners[1].Routes.VirtualHosts[0].Routes[0].Action.Clusters[0].Name = "ghost"
			},
			group: modeltest.SidecarGroup, want: `group "sidecar-fraud": unknown clusters ["ghost"]`,
		},
		"invalid header name": {
			edit: func(m *model.Mesh) {
				m.Group(modeltest.GatewayGroup).Listeners[0].Routes.VirtualHosts[0].Routes[0].Match.Headers[0].Name = "x\n"
			},
			group: modeltest.GatewayGroup, want: `route "fraud": invalid Route.Match: embedded message failed validation`,
		},
		"invalid utf-8": {
			edit: func(m *model.Mesh) {
				m.Group(modeltest.GatewayGroup).Listeners[0].Routes.VirtualHosts[0].Routes[2].Action.Retry.On = []string{"\xff"}
			},
			group: modeltest.GatewayGroup, want: `route "churn"`,
		},
		"cluster fails ValidateAll": {
			edit:  func(m *model.Mesh) { m.Cluster("churn.v1").Localities[0].Endpoints[0].Address = "" },
			group: modeltest.SidecarGroup, want: `endpoint "churn.v1": invalid ClusterLoadAssignment.Endpoints[0]`,
		},
		"filter rejects its configuration": {
			edit: func(m *model.Mesh) {
				m.Group(modeltest.GatewayGroup).Listeners[0].Routes.VirtualHosts[0].Routes[3].Action.Fanout.Members[0].Weight = -1
			},
			group: modeltest.GatewayGroup, want: `filter config "gateway-http.fanout": fanout plugin configuration: routes[1].members[0].weight: must be a finite number >= 0, got -1`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := modeltest.Sample(9000)
			if tc.edit != nil {
				tc.edit(m)
			}
			_, err := xds.ForGroup(m, tc.group)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("ForGroup() = %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}

func TestForNode(t *testing.T) {
	m := modeltest.Sample(9000)
	res, err := xds.ForNode(m, model.NodeInfo{ID: "fraud-7", Role: model.RoleSidecar, Service: "fraud"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.Items[resource.ListenerType]); n != 2 {
		t.Errorf("sidecar got %d listeners, want inbound and outbound", n)
	}
	for _, typ := range xds.Types() {
		if len(res.Items[typ]) != len(res.Versions[typ]) {
			t.Errorf("%s: %d items but %d versions", typ, len(res.Items[typ]), len(res.Versions[typ]))
		}
	}
	if _, err := xds.ForNode(m, model.NodeInfo{ID: "stranger"}); !errors.Is(err, xds.ErrUnknownNode) {
		t.Errorf("ForNode(stranger) = %v, want ErrUnknownNode", err)
	}
	js, err := res.JSON()
	if err != nil || !strings.Contains(string(js), `"listener"`) {
		t.Errorf("JSON() = %.80s, %v", js, err)
	}
}

// TestCacheGivesSameOutput checks that reusing built resources changes
// nothing: a cached translation equals a fresh one, resource by resource.
func TestCacheGivesSameOutput(t *testing.T) {
	c := xds.NewCache()
	for _, port := range []uint32{9000, 9000, 9100} {
		m := modeltest.Sample(port)
		for _, g := range m.Groups {
			fresh, err := xds.ForGroup(m, g.Name)
			if err != nil {
				t.Fatal(err)
			}
			cached, err := c.ForGroup(m, g.Name)
			if err != nil {
				t.Fatal(err)
			}
			for _, typ := range xds.Types() {
				if len(fresh.Items[typ]) != len(cached.Items[typ]) {
					t.Fatalf("port %d group %s %s: %d fresh, %d cached", port, g.Name, typ, len(fresh.Items[typ]), len(cached.Items[typ]))
				}
				for i := range fresh.Items[typ] {
					diff(t, fresh.Items[typ][i], cached.Items[typ][i])
				}
				if !slices.Equal(fresh.Versions[typ], cached.Versions[typ]) {
					t.Errorf("port %d group %s %s versions: %v vs %v", port, g.Name, typ, fresh.Versions[typ], cached.Versions[typ])
				}
			}
		}
		c.Sweep()
	}
}

// TestGRPCServerListener checks what an xDS gRPC server needs (gRPC's
// server-side rules): an address, routes served locally, RBAC before the
// router and no fault filter, TLS from certificate providers without SAN
// matching, and no SDS secrets in its group.
func TestGRPCServerListener(t *testing.T) {
	m := modeltest.Sample(9000)
	res, err := xds.ForGroup(m, modeltest.GRPCServerGroup)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.Items[resource.SecretType]); n != 0 {
		t.Errorf("%d SDS secrets for gRPC servers, which read certificate providers", n)
	}
	ln := res.Items[resource.ListenerType][0].(*listenerv3.Listener)
	if ln.GetName() != modeltest.GRPCServerListener || ln.GetAddress().GetSocketAddress().GetPortValue() != 9000 {
		t.Errorf("listener %q on %v", ln.GetName(), ln.GetAddress())
	}
	chain := ln.GetFilterChains()[0]
	var hcm hcmv3.HttpConnectionManager
	if err := chain.GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	var filters []string
	for _, f := range hcm.GetHttpFilters() {
		filters = append(filters, f.GetName())
	}
	if !slices.Equal(filters, []string{"envoy.filters.http.rbac", "envoy.filters.http.router"}) {
		t.Errorf("filters %v, want RBAC then the router", filters)
	}
	for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		if r.GetNonForwardingAction() == nil {
			t.Errorf("route %q forwards; a gRPC server serves locally", r.GetName())
		}
	}
	var tlsCtx tlsv3.DownstreamTlsContext
	if err := chain.GetTransportSocket().GetTypedConfig().UnmarshalTo(&tlsCtx); err != nil {
		t.Fatal(err)
	}
	common := tlsCtx.GetCommonTlsContext()
	if common.GetTlsCertificateProviderInstance().GetInstanceName() != xds.GRPCCertProvider ||
		common.GetValidationContext().GetCaCertificateProviderInstance().GetCertificateName() != "trust-bundle" ||
		len(common.GetValidationContext().GetMatchTypedSubjectAltNames()) != 0 ||
		len(common.GetTlsCertificateSdsSecretConfigs()) != 0 || !tlsCtx.GetRequireClientCertificate().GetValue() {
		t.Errorf("TLS context not as gRPC servers need it:\n%s", prototext.Format(&tlsCtx))
	}
}
