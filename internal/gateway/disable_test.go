package gateway_test

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/server"
	"github.com/maestro-ml/maestro/internal/e2etest"
	"github.com/maestro-ml/maestro/internal/gateway"
	"github.com/maestro-ml/maestro/internal/gateway/router"
	"github.com/maestro-ml/maestro/internal/gateway/upstream"
	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

// countingFilter stands in for a wasm filter: it records the route name
// it is told at each request callback and, when told so, sets a request
// header (which re-selects the route, as a wasm filter's header change
// clears Envoy's route cache).
type countingFilter struct {
	mu    sync.Mutex
	calls []string
	set   [2]string // header to set, or empty
}

// since returns the routes of the calls after the first n.
func (f *countingFilter) since(n int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls[n:])
}

func (f *countingFilter) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *countingFilter) NewStream(context.Context) (router.FilterStream, error) {
	return countingStream{f}, nil
}
func (f *countingFilter) Close() error { return nil }

type countingStream struct{ f *countingFilter }

func (s countingStream) OnRequest(_ context.Context, req *router.Message, route string) (*router.LocalReply, error) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.calls = append(s.f.calls, route)
	if s.f.set[0] != "" {
		req.Headers = append(req.Headers, s.f.set)
	}
	return nil, nil
}
func (countingStream) OnResponse(context.Context, *router.Message) (*router.LocalReply, error) {
	return nil, nil
}
func (countingStream) Done() {}

func discovered(name string) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
		ConfigSource: ads(), TypeUrls: []string{xdsconfig.WasmTypeURL}}}}
}

func wasmExt(t *testing.T, name string) *corev3.TypedExtensionConfig {
	return &corev3.TypedExtensionConfig{Name: name,
		TypedConfig: mustAny(t, &wasmfilterv3.Wasm{Config: &wasmv3.PluginConfig{Name: name, Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{
			Runtime: "envoy.wasm.runtime.v8", Code: &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Local{Local: &corev3.DataSource{
				Specifier: &corev3.DataSource_Filename{Filename: name + ".wasm"}}}}}}}})}
}

// disabling returns route r with the filters names disabled.
func disabling(t *testing.T, r *routev3.Route, names ...string) *routev3.Route {
	r.TypedPerFilterConfig = map[string]*anypb.Any{}
	for _, n := range names {
		r.TypedPerFilterConfig[n] = mustAny(t, &routev3.FilterConfig{Disabled: true})
	}
	return r
}

func headerRoute(name, header string) *routev3.Route {
	r := prefixRoute(name, "/", toCluster("a"))
	r.Match.Headers = []*routev3.HeaderMatcher{{Name: header, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}
	return r
}

// TestDisabledFilterSkipsTheStream checks Envoy's per-route filter
// disabling: a filter disabled on the route the request headers select
// first is not part of that stream's chain, and the chain, built once,
// stays as built when a filter changes a header and the router's route
// changes.
func TestDisabledFilterSkipsTheStream(t *testing.T) {
	cp := startFakeCP(t)
	b := startBackend(t, "a", ok200)
	setter, counted := &countingFilter{}, &countingFilter{}
	routes := routeTable(
		// x-moved is what the setter sets on paths under /move.
		disabling(t, headerRoute("moved", "x-moved"), "edge.counted"),
		disabling(t, prefixRoute("quiet", "/quiet/", toCluster("a")), "edge.counted"),
		prefixRoute("move", "/move/", toCluster("a")),
		disabling(t, prefixRoute("move-quiet", "/move-quiet/", toCluster("a")), "edge.counted"),
		disabling(t, prefixRoute("all-off", "/all-off/", toCluster("a")), "edge.setter", "edge.counted"),
		prefixRoute("loud", "/loud/", toCluster("a")),
	)
	res := resources(edgeListener(t, discovered("edge.setter"), discovered("edge.counted")), routes,
		[]*clusterv3.Cluster{edsCluster(t, "a", false)}, []*endpointv3.ClusterLoadAssignment{endpoints(t, "a", b.addr)})
	res[resource.ExtensionConfigType] = append(res[resource.ExtensionConfigType], wasmExt(t, "edge.setter"), wasmExt(t, "edge.counted"))
	cp.set(t, "gw", res)
	const limit = 1024
	gw := startGateway(t, "gw", cp.addr, func(c *gateway.Config) {
		c.BufferLimit = limit
		c.LoadFilter = func(_ context.Context, w *xdsconfig.WasmFilter, _ *upstream.Manager) (gateway.Filter, error) {
			if w.Name == "edge.setter" {
				return setter, nil
			}
			return counted, nil
		}
	})
	base := "http://" + gw.waitLive(t)

	tests := []struct {
		path string
		// setter and counted are the routes each filter is told, one
		// per call: none when the filter is not in the stream's chain.
		setter, counted []string
	}{
		{"/loud/x", []string{"loud"}, []string{"loud"}},
		{"/quiet/x", []string{"quiet"}, nil},
		// The setter sets x-moved and the route becomes "moved", which
		// disables the counted filter; the chain built from "move" keeps
		// it.
		{"/move/x", []string{"move"}, []string{"moved"}},
		// Built from "move-quiet", which disables the counted filter:
		// re-selecting "moved" does not add it back.
		{"/move-quiet/x", []string{"move-quiet"}, nil},
		{"/all-off/x", nil, nil},
		// No route: no filter is disabled (the router answers 404).
		{"/none", []string{""}, []string{""}},
	}
	for _, tc := range tests {
		t.Run(strings.Trim(tc.path, "/"), func(t *testing.T) {
			setter.mu.Lock()
			setter.set = [2]string{}
			if strings.HasPrefix(tc.path, "/move") {
				setter.set = [2]string{"x-moved", "1"}
			}
			setter.mu.Unlock()
			s0, c0 := setter.len(), counted.len()
			resp, _ := get(t, http.DefaultClient, base+tc.path)
			want := http.StatusOK
			if tc.path == "/none" {
				want = http.StatusNotFound
			}
			if resp.StatusCode != want {
				t.Fatalf("status %d, want %d", resp.StatusCode, want)
			}
			if got := setter.since(s0); !slices.Equal(got, tc.setter) {
				t.Errorf("first filter called on routes %q, want %q", got, tc.setter)
			}
			if got := counted.since(c0); !slices.Equal(got, tc.counted) {
				t.Errorf("second filter called on routes %q, want %q", got, tc.counted)
			}
		})
	}

	// A body over the limit is refused only by a chain that buffers it:
	// with every (buffering) filter disabled it streams through.
	for path, want := range map[string]int{"/loud/x": http.StatusRequestEntityTooLarge, "/all-off/x": http.StatusOK} {
		resp, err := http.Post(base+path, "application/octet-stream", bytes.NewReader(make([]byte, 2*limit)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s with a body over the limit: status %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// TestModelRouteWithoutTheHeaderStillRouted runs the translator's config
// with the real filters: the fraud route requires the model header, so it
// disables the fanout filter, and a standard client's call without the
// header must still be routed there (it first selects no route, so its
// chain has the fanout filter, which sets the header from the message)
// and metered by the slo filter, like a call with the header.
func TestModelRouteWithoutTheHeaderStillRouted(t *testing.T) {
	dir := e2etest.WasmDir(t)
	repo := t.TempDir()
	inferencetest.WriteModel(t, repo, inferencetest.TestModel{Name: "fraud"})
	srv := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1", ModelDir: repo})
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	e2etest.ReplaceFile(t, path, e2etest.SLOPolicy(dir, srv.GRPCAddr))
	cp := startPlane(t, path, "127.0.0.1:0")
	addr := startGateway(t, "gw-disable", cp.xds, nil)
	conn, err := grpc.NewClient(addr.waitLive(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := pb.NewGRPCInferenceServiceClient(conn)

	const n = 5
	if got := counts(t, client, "fraud", n); got["fraud-v1"] != n {
		t.Fatalf("with the header: answered by %v, want fraud-v1", got)
	}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		var hdr metadata.MD
		_, err := client.ModelInfer(ctx, e2etest.InferRequest("fraud"), grpc.Header(&hdr))
		cancel()
		if err != nil {
			t.Fatalf("without the header: %v", err)
		}
		if got := hdr.Get(server.ServerHeader); len(got) != 1 || got[0] != "fraud-v1" {
			t.Fatalf("without the header: answered by %q, want fraud-v1", got)
		}
	}
	waitMetric(t, addr, `maestro_slo_requests_total{route="fraud",model="fraud"}`, 2*n)
}
