package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// testTimeout bounds every wait on the server; reaching it fails the test.
const testTimeout = 10 * time.Second

type harness struct {
	srv  *Server
	conn *grpc.ClientConn
}

// byRole puts gateways in group "gw" and sidecars in "sc".
func byRole(n model.NodeInfo) (string, bool) {
	switch n.Role {
	case model.RoleGateway:
		return "gw", true
	case model.RoleSidecar:
		return "sc", true
	}
	return "", false
}

func start(t *testing.T) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &harness{srv: s, conn: conn}
}

func (h *harness) set(t *testing.T, version string, snaps map[string]*cache.Snapshot) {
	t.Helper()
	if err := h.srv.Update(context.Background(), Set{Version: version, Snapshots: snaps, Resolve: byRole}); err != nil {
		t.Fatal(err)
	}
}

func streamCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func nodeStatus(t *testing.T, s *Server, id, typeURL string) TypeStatus {
	t.Helper()
	for _, n := range s.Nodes() {
		if n.ID != id {
			continue
		}
		for _, ts := range n.Types {
			if ts.TypeURL == typeURL {
				return ts
			}
		}
	}
	t.Fatalf("no status for node %q type %s in %+v", id, typeURL, s.Nodes())
	return TypeStatus{}
}

func TestADSSotWAckNack(t *testing.T) {
	h := start(t)
	h.set(t, "v1", map[string]*cache.Snapshot{"gw": testSnapshot(t, "v1", 9000, "a")})
	ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).StreamAggregatedResources(streamCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	node := testNode("gw-1", "gateway", "")
	recv := func(want string) *discoveryv3.DiscoveryResponse {
		t.Helper()
		resp, err := ads.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if resp.GetVersionInfo() != want {
			t.Fatalf("got version %q, want %q", resp.GetVersionInfo(), want)
		}
		return resp
	}
	send := func(req *discoveryv3.DiscoveryRequest) {
		t.Helper()
		req.TypeUrl = resource.ClusterType
		if err := ads.Send(req); err != nil {
			t.Fatal(err)
		}
	}

	send(&discoveryv3.DiscoveryRequest{Node: node})
	r1 := recv("v1")
	if len(r1.GetResources()) != 1 {
		t.Fatalf("got %d clusters, want 1", len(r1.GetResources()))
	}
	send(&discoveryv3.DiscoveryRequest{VersionInfo: "v1", ResponseNonce: r1.GetNonce()}) // ACK

	h.set(t, "v2", map[string]*cache.Snapshot{"gw": testSnapshot(t, "v2", 9000, "a", "b")})
	r2 := recv("v2")
	// The ACK of v1 was handled before v2 could be sent on this stream.
	if st := nodeStatus(t, h.srv, "gw-1", resource.ClusterType); st.Acked != "v1" || st.Sent != "v2" || st.Nacked != "" {
		t.Fatalf("after ACK: %+v", st)
	}
	send(&discoveryv3.DiscoveryRequest{VersionInfo: "v1", ResponseNonce: r2.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "cluster b: bad config"}}) // NACK

	// The rejected v2 must not be sent again: the next response is v3.
	h.set(t, "v3", map[string]*cache.Snapshot{"gw": testSnapshot(t, "v3", 9001, "a", "b")})
	r3 := recv("v3")
	st := nodeStatus(t, h.srv, "gw-1", resource.ClusterType)
	// The error names b only: a was applied.
	if st.Nacked != "v2" || st.NackError != "cluster b: bad config" || !slices.Equal(st.NackedResources, []string{"b"}) ||
		!slices.Equal(st.AppliedResources, []string{"a"}) || st.NackUnattributed || st.Acked != "v1" {
		t.Fatalf("NACK not kept reported per resource: %+v", st)
	}
	if got := value(t, h.srv.metrics.nacked.WithLabelValues("cluster")); got != 1 {
		t.Errorf("nacked_nodes{cluster} = %v, want 1", got)
	}
	for name, want := range map[string]float64{"a": 0, "b": 1} {
		if got := value(t, h.srv.metrics.rejected.WithLabelValues("cluster", name)); got != want {
			t.Errorf("rejected_resources{cluster,%s} = %v, want %v", name, got, want)
		}
	}
	send(&discoveryv3.DiscoveryRequest{VersionInfo: "v3", ResponseNonce: r3.GetNonce()}) // ACK

	h.set(t, "v4", map[string]*cache.Snapshot{"gw": testSnapshot(t, "v4", 9002, "a")})
	recv("v4")
	st = nodeStatus(t, h.srv, "gw-1", resource.ClusterType)
	if st.Nacked != "" || st.Acked != "v3" || st.ACKs != 2 || st.NACKs != 1 || st.Pushes != 4 {
		t.Fatalf("after recovery: %+v", st)
	}
	if got := value(t, h.srv.metrics.nacked.WithLabelValues("cluster")); got != 0 {
		t.Errorf("nacked_nodes{cluster} = %v, want 0", got)
	}
	if got := value(t, h.srv.metrics.rejected.WithLabelValues("cluster", "b")); got != 0 {
		t.Errorf("rejected_resources{cluster,b} = %v after the ACK, want 0", got)
	}
	for name, want := range map[string]float64{"nacks": 1, "acks": 2} {
		c := map[string]*prometheus.CounterVec{"nacks": h.srv.metrics.nacks, "acks": h.srv.metrics.acks}[name]
		if got := value(t, c.WithLabelValues("cluster")); got != want {
			t.Errorf("%s{cluster} = %v, want %v", name, got, want)
		}
	}
	if got := value(t, h.srv.metrics.connectedNodes); got != 1 {
		t.Errorf("connected_nodes = %v, want 1", got)
	}
}

func TestADSDeltaAckNack(t *testing.T) {
	h := start(t)
	h.set(t, "v1", map[string]*cache.Snapshot{"sc": testSnapshot(t, "v1", 9000, "a", "b")})
	ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).DeltaAggregatedResources(streamCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	send := func(req *discoveryv3.DeltaDiscoveryRequest) {
		t.Helper()
		req.TypeUrl = resource.ClusterType
		if err := ads.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(wantNames, wantRemoved []string) *discoveryv3.DeltaDiscoveryResponse {
		t.Helper()
		resp, err := ads.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		var names []string
		for _, r := range resp.GetResources() {
			names = append(names, r.GetName())
			if r.GetVersion() == "" {
				t.Errorf("resource %q has no version", r.GetName())
			}
		}
		slices.Sort(names)
		removed := slices.Sorted(slices.Values(resp.GetRemovedResources()))
		if !slices.Equal(names, wantNames) || !slices.Equal(removed, wantRemoved) {
			t.Fatalf("got resources %v removed %v, want %v removed %v", names, removed, wantNames, wantRemoved)
		}
		return resp
	}

	send(&discoveryv3.DeltaDiscoveryRequest{Node: testNode("sc-1", "sidecar", "fraud")})
	r1 := recv([]string{"a", "b"}, nil)
	send(&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: r1.GetNonce()}) // ACK

	// Only the changed cluster is sent: "a" keeps its content, "b" goes,
	// "c" is new. Delta clusters carry per-resource versions.
	v2 := testSnapshot(t, "v2", 9000, "a", "c")
	h.set(t, "v2", map[string]*cache.Snapshot{"sc": v2})
	r2 := recv([]string{"c"}, []string{"b"})
	if st := nodeStatus(t, h.srv, "sc-1", resource.ClusterType); st.Acked != "v1" || st.Sent != "v2" {
		t.Fatalf("after ACK: %+v", st)
	}
	send(&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: r2.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "cluster c: unknown field"}}) // NACK

	// Setting the same content again pushes nothing.
	h.set(t, "v2", map[string]*cache.Snapshot{"sc": testSnapshot(t, "v2", 9000, "a", "c")})
	if got := value(t, h.srv.metrics.snapshots.WithLabelValues("sc")); got != 2 {
		t.Errorf("snapshot_updates_total{sc} = %v, want 2 (unchanged content must not push)", got)
	}

	h.set(t, "v3", map[string]*cache.Snapshot{"sc": testSnapshot(t, "v3", 9000, "a", "c", "d")})
	recv([]string{"d"}, nil)
	st := nodeStatus(t, h.srv, "sc-1", resource.ClusterType)
	if st.Nacked != "v2" || st.NackError != "cluster c: unknown field" || !slices.Equal(st.NackedResources, []string{"c"}) ||
		!slices.Equal(st.AppliedResources, []string{"b"}) {
		t.Fatalf("delta NACK not kept reported: %+v", st)
	}
}

func TestUpdateRejectsInconsistentSets(t *testing.T) {
	h := start(t)
	h.set(t, "v1", map[string]*cache.Snapshot{"gw": testSnapshot(t, "v1", 9000, "a")})
	good := testSnapshot(t, "v2", 9000, "a")
	// A cluster whose endpoints are missing: not Consistent().
	broken := testSnapshot(t, "v2", 9000, "a", "b")
	delete(broken.Resources[0].Items, "b") // endpoints of "b"
	tests := map[string]Set{
		"nil snapshot": {Version: "v2", Snapshots: map[string]*cache.Snapshot{"gw": good, "sc": nil}, Resolve: byRole},
		"inconsistent": {Version: "v2", Snapshots: map[string]*cache.Snapshot{"gw": good, "sc": broken}, Resolve: byRole},
		"no resolver":  {Version: "v2", Snapshots: map[string]*cache.Snapshot{"gw": good}},
	}
	for name, set := range tests {
		t.Run(name, func(t *testing.T) {
			if err := h.srv.Update(context.Background(), set); err == nil {
				t.Fatal("update succeeded")
			}
			if v := h.srv.Current().Version; v != "v1" {
				t.Fatalf("serving %q after a rejected update, want v1", v)
			}
			snap, err := h.srv.cache.GetSnapshot("gw")
			if err != nil || snap.GetVersion(resource.ClusterType) != "v1" {
				t.Fatalf("cache holds %v (%v), want v1", snap, err)
			}
		})
	}
}

// value reads the single sample of a gauge or counter.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Gauge != nil {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

// TestUnmatchedNodeIsAnsweredOnceAGroupMatches connects a node no group
// matches; a later set that matches it answers its open watch.
func TestUnmatchedNodeIsAnsweredOnceAGroupMatches(t *testing.T) {
	h := start(t)
	h.set(t, "v1", map[string]*cache.Snapshot{"gw": testSnapshot(t, "v1", 9000, "a")})
	ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).StreamAggregatedResources(streamCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := ads.Send(&discoveryv3.DiscoveryRequest{Node: testNode("late", "proxyless", ""), TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	// Wait (bounded) until the node's watch is open under its unmatched
	// key, so the update below must answer that watch.
	deadline := time.Now().Add(testTimeout)
	for h.srv.cache.GetStatusInfo(unmatchedPrefix+"late") == nil || h.srv.cache.GetStatusInfo(unmatchedPrefix+"late").GetNumWatches() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the unmatched node's watch never opened")
		}
		time.Sleep(time.Millisecond)
	}
	if n := h.srv.Nodes(); len(n) != 1 || n[0].Group != "" {
		t.Fatalf("nodes = %+v, want one unmatched", n)
	}
	all := func(model.NodeInfo) (string, bool) { return "gw", true }
	if err := h.srv.Update(context.Background(), Set{Version: "v2", Resolve: all,
		Snapshots: map[string]*cache.Snapshot{"gw": testSnapshot(t, "v2", 9000, "a")}}); err != nil {
		t.Fatal(err)
	}
	resp, err := ads.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVersionInfo() != "v2" {
		t.Fatalf("got version %q, want v2", resp.GetVersionInfo())
	}
}

// TestPerTypeServices fetches each type over its own discovery service,
// as an Envoy without ADS would.
func TestPerTypeServices(t *testing.T) {
	h := start(t)
	h.set(t, "v1", map[string]*cache.Snapshot{"gw": testSnapshot(t, "v1", 9000, "a", "b")})
	type stream interface {
		Send(*discoveryv3.DiscoveryRequest) error
		Recv() (*discoveryv3.DiscoveryResponse, error)
	}
	tests := map[string]struct {
		open  func(ctx context.Context) (stream, error)
		typ   string
		names []string
		want  int
	}{
		"LDS": {func(ctx context.Context) (stream, error) {
			return listenerservice.NewListenerDiscoveryServiceClient(h.conn).StreamListeners(ctx)
		}, resource.ListenerType, nil, 1},
		"RDS": {func(ctx context.Context) (stream, error) {
			return routeservice.NewRouteDiscoveryServiceClient(h.conn).StreamRoutes(ctx)
		}, resource.RouteType, []string{"routes"}, 1},
		"CDS": {func(ctx context.Context) (stream, error) {
			return clusterservice.NewClusterDiscoveryServiceClient(h.conn).StreamClusters(ctx)
		}, resource.ClusterType, nil, 2},
		"EDS": {func(ctx context.Context) (stream, error) {
			return endpointservice.NewEndpointDiscoveryServiceClient(h.conn).StreamEndpoints(ctx)
		}, resource.EndpointType, []string{"a", "b"}, 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := tc.open(streamCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(&discoveryv3.DiscoveryRequest{Node: testNode("gw-"+name, "gateway", ""), TypeUrl: tc.typ, ResourceNames: tc.names}); err != nil {
				t.Fatal(err)
			}
			resp, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetVersionInfo() != "v1" || resp.GetTypeUrl() != tc.typ || len(resp.GetResources()) != tc.want {
				t.Fatalf("got %s version %q with %d resources, want %d", resp.GetTypeUrl(), resp.GetVersionInfo(), len(resp.GetResources()), tc.want)
			}
		})
	}
}

// TestOddRequestsDoNotHurtTheServer sends malformed or unexpected requests
// on their own streams; the server must neither panic nor stop serving.
func TestOddRequestsDoNotHurtTheServer(t *testing.T) {
	h := start(t)
	h.set(t, "v1", map[string]*cache.Snapshot{"gw": testSnapshot(t, "v1", 9000, "a")})
	tests := map[string]*discoveryv3.DiscoveryRequest{
		"no node":                {TypeUrl: resource.ClusterType},
		"no type url":            {Node: testNode("x1", "gateway", "")},
		"unknown type url":       {Node: testNode("x2", "gateway", ""), TypeUrl: "type.googleapis.com/not.a.Type"},
		"nack for nothing sent":  {Node: testNode("x3", "gateway", ""), TypeUrl: resource.ClusterType, ResponseNonce: "99", ErrorDetail: &rpcstatus.Status{Message: "x"}},
		"error detail, no nonce": {Node: testNode("x4", "gateway", ""), TypeUrl: resource.ClusterType, ErrorDetail: &rpcstatus.Status{Message: "x"}},
		"metadata of wrong type": {Node: &corev3.Node{Id: "x5", Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"maestro.role": structpb.NewNumberValue(3)}}}, TypeUrl: resource.ClusterType},
	}
	for name, req := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).StreamAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := ads.Send(req); err != nil {
				t.Fatal(err)
			}
			// Whatever the server makes of it, a well-formed client on a
			// fresh stream is still served.
			good, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).StreamAggregatedResources(streamCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := good.Send(&discoveryv3.DiscoveryRequest{Node: testNode("good-"+name, "gateway", ""), TypeUrl: resource.ClusterType}); err != nil {
				t.Fatal(err)
			}
			if resp, err := good.Recv(); err != nil || resp.GetVersionInfo() != "v1" {
				t.Fatalf("good client after %q: %v, %v", name, resp.GetVersionInfo(), err)
			}
		})
	}
}

// TestUpdateRecordsPushSpans checks the push span of a good and of a
// rejected update.
func TestUpdateRecordsPushSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	s, err := New(context.Background(), Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Tracer: tp})
	if err != nil {
		t.Fatal(err)
	}
	good := Set{Version: "v1", Resolve: byRole, Snapshots: map[string]*cache.Snapshot{"gw": testSnapshot(t, "v1", 9000, "a")}}
	if err := s.Update(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(context.Background(), Set{Version: "v2", Snapshots: good.Snapshots}); err == nil {
		t.Fatal("update without resolver succeeded")
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want 2", len(spans))
	}
	attrs := func(i int) map[string]string {
		out := map[string]string{}
		for _, kv := range spans[i].Attributes() {
			out[string(kv.Key)] = kv.Value.String()
		}
		return out
	}
	if spans[0].Name() != "controlplane.push" || attrs(0)["maestro.version"] != "v1" || attrs(0)["maestro.groups_pushed"] != "1" {
		t.Errorf("first span %s %v", spans[0].Name(), attrs(0))
	}
	if spans[1].Status().Code != otelcodes.Error {
		t.Errorf("rejected update's span status = %v, want error", spans[1].Status())
	}
}
