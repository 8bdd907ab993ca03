package server

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
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
	var weighted []*route.WeightedCluster_ClusterWeight
	for i, name := range []string{"bad", "good"} {
		c := &cluster.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
			EdsClusterConfig: &cluster.Cluster_EdsClusterConfig{EdsConfig: &core.ConfigSource{
				ResourceApiVersion:    core.ApiVersion_V3,
				ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
			}},
		}
		if name == "bad" {
			c.LbPolicy = cluster.Cluster_MAGLEV
		}
		cs = append(cs, c)
		eps = append(eps, &endpoint.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpoint.LocalityLbEndpoints{{
				Locality:            &core.Locality{Region: "local", Zone: "a"},
				LoadBalancingWeight: wrapperspb.UInt32(1),
				LbEndpoints: []*endpoint.LbEndpoint{{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
					Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
						Address: "127.0.0.1", PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(9100 + i)},
					}}},
				}}}},
			}},
		})
		weighted = append(weighted, &route.WeightedCluster_ClusterWeight{Name: name, Weight: wrapperspb.UInt32(50)})
	}
	routerAny, err := anypb.New(&router.Router{})
	if err != nil {
		t.Fatal(err)
	}
	manager, err := anypb.New(&hcm.HttpConnectionManager{
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{
			Name: "fraud",
			VirtualHosts: []*route.VirtualHost{{
				Name: "fraud", Domains: []string{"fraud"},
				Routes: []*route.Route{{
					Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
					Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_WeightedClusters{
						WeightedClusters: &route.WeightedCluster{Clusters: weighted},
					}}},
				}},
			}},
		}},
		HttpFilters: []*hcm.HttpFilter{{Name: "router", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: routerAny}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := cache.NewSnapshot(version, map[resourcev3.Type][]types.Resource{
		resourcev3.ClusterType:  cs,
		resourcev3.EndpointType: eps,
		resourcev3.ListenerType: {&listener.Listener{Name: "fraud", ApiListener: &listener.ApiListener{ApiListener: manager}}},
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
		if st, ok := findStatus(h.srv, "px-1", resourcev3.ClusterType); ok && st.Nacked != "" {
			if !slices.Equal(st.NackedResources, []string{"bad"}) || !slices.Equal(st.AppliedResources, []string{"good"}) || st.NackUnattributed {
				t.Fatalf("gRPC NACK reported as rejected %v, applied %v (unattributed %v); want bad rejected, good applied\nerror: %s",
					st.NackedResources, st.AppliedResources, st.NackUnattributed, st.NackError)
			}
			if !strings.Contains(st.NackError, `resource "bad"`) {
				t.Errorf("NACK error %q does not name bad", st.NackError)
			}
			break
		}
		select {
		case <-deadline:
			st, _ := findStatus(h.srv, "px-1", resourcev3.ClusterType)
			t.Fatalf("no cluster NACK from the gRPC client; status %+v", st)
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
