package gateway_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	xdsserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/internal/e2etest"
	"github.com/maestro-ml/maestro/internal/gateway"
)

// waitLimit bounds every wait on a condition.
const waitLimit = e2etest.WaitLimit

// fakeCP is a go-control-plane ADS server fed hand-made snapshots, for
// configs the translator does not emit (NACKs, failure injection).
type fakeCP struct {
	addr  string
	cache cache.SnapshotCache
	nacks chan string
	ver   int
}

func startFakeCP(t testing.TB) *fakeCP {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeCP{cache: cache.NewSnapshotCache(true, cache.IDHash{}, nil), nacks: make(chan string, 16)}
	cb := xdsserver.CallbackFuncs{StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
		if d := req.GetErrorDetail(); d != nil {
			select {
			case f.nacks <- d.GetMessage():
			default:
			}
		}
		return nil
	}}
	srv := xdsserver.NewServer(ctx, f.cache, cb)
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); cancel() })
	f.addr = ln.Addr().String()
	return f
}

// set pushes a snapshot to node.
func (f *fakeCP) set(t testing.TB, node string, res map[resource.Type][]types.Resource) {
	t.Helper()
	f.ver++
	snap, err := cache.NewSnapshot(strconv.Itoa(f.ver), res)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

// runningGateway is a gateway started for a test (e2etest.StartGateway).
type runningGateway struct{ *e2etest.Gateway }

// startGateway runs a gateway for node against xdsAddr, its listener
// "edge" on a free loopback port.
func startGateway(t testing.TB, node, xdsAddr string, mod func(*gateway.Config)) *runningGateway {
	t.Helper()
	return &runningGateway{e2etest.StartGateway(t, node, xdsAddr, mod)}
}

// waitLive polls /ready until LIVE and returns the edge listener's address.
func (rg *runningGateway) waitLive(t testing.TB) string {
	t.Helper()
	return rg.WaitLive(t)
}

// metric returns the value of one series of /stats/prometheus.
func (rg *runningGateway) metric(t testing.TB, prefix string) float64 {
	t.Helper()
	return rg.Metric(t, prefix)
}

func waitMetric(t testing.TB, gw *runningGateway, series string, want float64) {
	t.Helper()
	gw.WaitMetric(t, series, want)
}

// backend is an HTTP/1.1 + h2c test server that names itself in the
// x-maestro-server header.
type backend struct {
	name string
	addr string
	mu   sync.Mutex
	hits int
}

func startBackend(t testing.TB, name string, h func(n int, w http.ResponseWriter, r *http.Request)) *backend {
	t.Helper()
	b := &backend{name: name}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		b.mu.Lock()
		b.hits++
		n := b.hits
		b.mu.Unlock()
		w.Header().Set("x-maestro-server", name)
		h(n, w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	b.addr = ln.Addr().String()
	return b
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits
}

// Hand-made resources.

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3}
}

func edgeListener(t testing.TB, filters ...*hcmv3.HttpFilter) *listenerv3.Listener {
	t.Helper()
	filters = append(filters, &hcmv3.HttpFilter{Name: "envoy.filters.http.router",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}})
	m := &hcmv3.HttpConnectionManager{
		StatPrefix: "edge", CodecType: hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: "edge"}},
		HttpFilters:    filters,
	}
	return &listenerv3.Listener{
		Name:    "edge",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, m)}}}}},
	}
}

func routeTable(routes ...*routev3.Route) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: "edge", VirtualHosts: []*routev3.VirtualHost{{Name: "edge", Domains: []string{"*"}, Routes: routes}}}
}

func prefixRoute(name, prefix string, action *routev3.RouteAction) *routev3.Route {
	return &routev3.Route{Name: name, Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routev3.Route_Route{Route: action}}
}

func toCluster(name string) *routev3.RouteAction {
	return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}
}

func edsCluster(t testing.TB, name string, http2 bool) *clusterv3.Cluster {
	t.Helper()
	c := &clusterv3.Cluster{
		Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads()},
		ConnectTimeout:   durationpb.New(time.Second),
	}
	if http2 {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(t, &upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}})}
	}
	return c
}

func endpoints(t testing.TB, cluster string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	var lbs []*endpointv3.LbEndpoint
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}}}},
			LoadBalancingWeight: wrapperspb.UInt32(1)})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: cluster, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		Locality: &corev3.Locality{Region: "local"}, LbEndpoints: lbs, LoadBalancingWeight: wrapperspb.UInt32(1)}}}
}

// resources assembles a snapshot's resources.
func resources(l *listenerv3.Listener, rc *routev3.RouteConfiguration, cs []*clusterv3.Cluster, eps []*endpointv3.ClusterLoadAssignment) map[resource.Type][]types.Resource {
	out := map[resource.Type][]types.Resource{resource.ListenerType: {l}, resource.RouteType: {rc}}
	for _, c := range cs {
		out[resource.ClusterType] = append(out[resource.ClusterType], c)
	}
	for _, e := range eps {
		out[resource.EndpointType] = append(out[resource.EndpointType], e)
	}
	return out
}

func get(t testing.TB, client *http.Client, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// The real control plane and inference servers of the tests that use
// them, shared with the end-to-end suites through e2etest.

// plane is a plaintext control plane serving a policy file.
type plane struct{ xds string }

func startPlane(t testing.TB, path, xdsAddr string) *plane {
	t.Helper()
	return &plane{xds: e2etest.StartPlaintext(t, path, xdsAddr).XDS}
}

func counts(t testing.TB, c pb.GRPCInferenceServiceClient, model string, n int) map[string]int {
	t.Helper()
	return e2etest.Counts(t, c, model, n)
}
