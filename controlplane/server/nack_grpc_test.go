package server

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// proxylessSnapshot is what a proxyless gRPC client dialling xds:///fraud
// needs: an API listener splitting between clusters good and bad. Envoy
// would take both clusters; gRPC-Go refuses bad's load-balancing policy
// (MAGLEV) and applies good.
func proxylessSnapshot(t *testing.T, version string) *cache.Snapshot {
	t.Helper()
	var cs, eps []types.Resource
	var weighted []*routev3.WeightedCluster_ClusterWeight
	for i, name := range []string{"bad", "good"} {
		c := &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
				ResourceApiVersion:    corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			}},
		}
		if name == "bad" {
			c.LbPolicy = clusterv3.Cluster_MAGLEV
		}
		cs = append(cs, c)
		eps = append(eps, &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				Locality:            &corev3.Locality{Region: "local", Zone: "a"},
				LoadBalancingWeight: wrapperspb.UInt32(1),
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(9100 + i)},
					}}},
				}}}},
			}},
		})
		weighted = append(weighted, &routev3.WeightedCluster_ClusterWeight{Name: name, Weight: wrapperspb.UInt32(50)})
	}
	routerAny, err := anypb.New(&routerv3.Router{})
	if err != nil {
		t.Fatal(err)
	}
	manager, err := anypb.New(&hcmv3.HttpConnectionManager{
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "fraud",
			VirtualHosts: []*routev3.VirtualHost{{
				Name: "fraud", Domains: []string{"fraud"},
				Routes: []*routev3.Route{{
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
						WeightedClusters: &routev3.WeightedCluster{Clusters: weighted},
					}}},
				}},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: routerAny}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := cache.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ClusterType:  cs,
		resource.EndpointType: eps,
		resource.ListenerType: {&listenerv3.Listener{Name: "fraud", ApiListener: &listenerv3.ApiListener{ApiListener: manager}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// TestReliabilityGRPCClientNACKIsReportedPerResource runs a real gRPC-Go
// xDS client against the server: it rejects one cluster of a response and
// applies the other, and the status says exactly that.
func TestReliabilityGRPCClientNACKIsReportedPerResource(t *testing.T) {
	h := start(t)
	if err := h.srv.Update(t.Context(), Set{Version: "v1", Snapshots: map[string]*cache.Snapshot{"px": proxylessSnapshot(t, "v1")}, Resolve: byRoleWithProxyless}); err != nil {
		t.Fatal(err)
	}
	addr := h.conn.Target()
	bootstrap := fmt.Sprintf(`{"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "px-1", "metadata": {"maestro.role": "proxyless"}}}`, addr)
	resolver, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///fraud", grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	conn.Connect() // leaves idle: the resolver starts its watches
	deadline := time.After(testTimeout)
	for {
		// gRPC-Go subscribes to the route's clusters one watch at a time,
		// so a first response may hold bad alone; every NACK must blame
		// bad only, and the test ends at the one whose response also held
		// good.
		if st, ok := findStatus(h.srv, "px-1", resource.ClusterType); ok && st.Nacked != "" {
			if !slices.Equal(st.NackedResources, []string{"bad"}) || st.NackUnattributed ||
				(len(st.AppliedResources) > 0 && !slices.Equal(st.AppliedResources, []string{"good"})) {
				t.Fatalf("gRPC NACK reported as rejected %v, applied %v (unattributed %v); want bad rejected, good applied\nerror: %s",
					st.NackedResources, st.AppliedResources, st.NackUnattributed, st.NackError)
			}
			if !strings.Contains(st.NackError, `resource "bad"`) {
				t.Errorf("NACK error %q does not name bad", st.NackError)
			}
			if slices.Equal(st.AppliedResources, []string{"good"}) {
				break
			}
		}
		select {
		case <-deadline:
			st, _ := findStatus(h.srv, "px-1", resource.ClusterType)
			t.Fatalf("no cluster NACK of a response holding both clusters from the gRPC client; status %+v", st)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if got := value(t, h.srv.metrics.rejected.WithLabelValues("cluster", "bad")); got != 1 {
		t.Errorf("rejected_resources{cluster,bad} = %v, want 1", got)
	}
	if got := value(t, h.srv.metrics.rejected.WithLabelValues("cluster", "good")); got != 0 {
		t.Errorf("rejected_resources{cluster,good} = %v, want 0", got)
	}
}

// findStatus is nodeStatus without failing when the node is not there yet.
func findStatus(s *Server, id, typeURL string) (TypeStatus, bool) {
	for _, n := range s.Nodes() {
		if n.ID != id {
			continue
		}
		for _, ts := range n.Types {
			if ts.TypeURL == typeURL {
				return ts, true
			}
		}
	}
	return TypeStatus{}, false
}
