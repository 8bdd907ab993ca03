package gateway_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// probeGateway runs the wasmhost test module "probe" as an ECDS filter in
// front of two routes: one for requests the filter marked x-probe: seen,
// one for the rest. Its callouts go to cluster "backend".
func probeGateway(t *testing.T, failOpen bool) (base string, marked, plain, side *backend) {
	t.Helper()
	wasm := wasmtest.Build(t, "github.com/maestro-ml/maestro/wasmfilter/wasmhost/testdata/probe")
	file := filepath.Join(t.TempDir(), "probe.wasm")
	if err := os.WriteFile(file, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	echo := func(_ int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-route-name", r.Header.Get("x-route-name"))
	}
	marked, plain, side = startBackend(t, "marked", echo), startBackend(t, "plain", echo), startBackend(t, "side", echo)
	seen := &routev3.Route{Name: "marked", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
		Headers: []*routev3.HeaderMatcher{{Name: "x-probe", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "seen"}}}}}},
		Action: &routev3.Route_Route{Route: toCluster("marked")}}
	l := edgeListener(t, &hcmv3.HttpFilter{Name: "edge.probe", ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
		ConfigSource: ads(), TypeUrls: []string{xdsconfig.WasmTypeURL}}}})
	res := resources(l, routeTable(seen, prefixRoute("plain", "/", toCluster("plain"))),
		[]*clusterv3.Cluster{edsCluster(t, "marked", false), edsCluster(t, "plain", false), edsCluster(t, "backend", false)},
		[]*endpointv3.ClusterLoadAssignment{endpoints(t, "marked", marked.addr), endpoints(t, "plain", plain.addr), endpoints(t, "backend", side.addr)})
	res[resource.ExtensionConfigType] = append(res[resource.ExtensionConfigType], &corev3.TypedExtensionConfig{Name: "edge.probe",
		TypedConfig: mustAny(t, &wasmfilterv3.Wasm{Config: &wasmv3.PluginConfig{Name: "probe", FailOpen: failOpen, //nolint:staticcheck // the fail_open the gateway supports (see xdsconfig's PluginConfig fields)
			Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{VmId: "probe", Runtime: "envoy.wasm.runtime.v8",
				Code: &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Local{Local: &corev3.DataSource{
					Specifier: &corev3.DataSource_Filename{Filename: file}}}}}}}})})
	cp := startFakeCP(t)
	cp.set(t, "gw", res)
	gw := startGateway(t, "gw", cp.addr, nil)
	return "http://" + gw.waitLive(t), marked, plain, side
}

// TestWasmFilterInChain checks the filter's Envoy semantics in the chain:
// a header it sets re-selects the route (and the filter saw the route
// name), a callout reaches its cluster through the gateway, a local reply
// answers.
func TestWasmFilterInChain(t *testing.T) {
	base, marked, plain, side := probeGateway(t, false)
	res, _ := get(t, http.DefaultClient, base+"/hello")
	if res.StatusCode != http.StatusOK || marked.count() != 1 || plain.count() != 0 {
		t.Fatalf("got %d; marked %d plain %d: the filter's x-probe header must re-select the route", res.StatusCode, marked.count(), plain.count())
	}
	if got := res.Header.Get("x-route-name"); got != "plain" {
		t.Errorf("the filter read route_name %q, want plain (the route before its change)", got)
	}
	if res, _ := get(t, http.DefaultClient, base+"/callout"); res.StatusCode != http.StatusOK || side.count() != 1 {
		t.Fatalf("callout: got %d, side cluster hit %d times, want 200 and 1", res.StatusCode, side.count())
	}
	if res, body := get(t, http.DefaultClient, base+"/local"); res.StatusCode != 418 || body != "short and stout" {
		t.Fatalf("local reply: got %d %q", res.StatusCode, body)
	}
}

// TestWasmTrapFailsClosedOrOpen traps one VM and checks Envoy's failure
// policy: fail closed answers 503 (gRPC UNAVAILABLE) on that worker's
// streams; fail open lets them through.
func TestWasmTrapFailsClosedOrOpen(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(map[bool]string{false: "fail closed", true: "fail open"}[failOpen], func(t *testing.T) {
			base, _, _, _ := probeGateway(t, failOpen)
			res, _ := get(t, http.DefaultClient, base+"/panic")
			want := map[bool]int{false: http.StatusServiceUnavailable, true: http.StatusOK}[failOpen]
			if res.StatusCode != want {
				t.Fatalf("the trapping request got %d, want %d", res.StatusCode, want)
			}
			// Streams alternate over the workers; the trapped one keeps
			// failing, the others keep working.
			codes := map[int]int{}
			for range 8 {
				res, _ := get(t, http.DefaultClient, base+"/hello")
				codes[res.StatusCode]++
			}
			if failOpen && codes[http.StatusOK] != 8 {
				t.Fatalf("fail open: statuses %v, want all 200", codes)
			}
			if !failOpen && codes[http.StatusServiceUnavailable] == 0 {
				t.Fatalf("fail closed: statuses %v, want 503 from the trapped worker", codes)
			}
			if !failOpen {
				res, _ := get(t, h2cClient(), base+"/hello", "content-type", "application/grpc")
				res2, _ := get(t, h2cClient(), base+"/hello", "content-type", "application/grpc")
				if res.Header.Get("grpc-status") != "14" && res2.Header.Get("grpc-status") != "14" {
					t.Fatalf("gRPC on the trapped worker: grpc-status %q/%q, want 14", res.Header.Get("grpc-status"), res2.Header.Get("grpc-status"))
				}
			}
		})
	}
}
