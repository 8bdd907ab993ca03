package gateway_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/internal/e2etest"
	"github.com/maestro-ml/maestro/internal/gateway"
	"github.com/maestro-ml/maestro/internal/gateway/router"
	"github.com/maestro-ml/maestro/internal/gateway/upstream"
	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

func ok200(_ int, w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }

func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

func TestNackNamesUnsupportedFieldAndKeepsLastGood(t *testing.T) {
	cp := startFakeCP(t)
	b := startBackend(t, "a", ok200)
	cl := []*clusterv3.Cluster{edsCluster(t, "a", false)}
	eps := []*endpointv3.ClusterLoadAssignment{endpoints(t, "a", b.addr)}
	cp.set(t, "gw", resources(edgeListener(t), routeTable(prefixRoute("api", "/", toCluster("a"))), cl, eps))
	gw := startGateway(t, "gw", cp.addr, nil)
	addr := gw.waitLive(t)

	bad := toCluster("a")
	bad.HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}}}
	cp.set(t, "gw", resources(edgeListener(t), routeTable(prefixRoute("api", "/", bad)), cl, eps))
	select {
	case msg := <-cp.nacks:
		want := `route config "edge": field virtual_hosts[edge].routes[api].route.hash_policy unsupported`
		if msg != want {
			t.Fatalf("NACK error_detail %q, want %q", msg, want)
		}
	case <-time.After(waitLimit):
		t.Fatal("no NACK")
	}
	res, body := get(t, http.DefaultClient, "http://"+addr+"/v2/models/x")
	if res.StatusCode != http.StatusOK || res.Header.Get("x-maestro-server") != "a" {
		t.Fatalf("after the NACK got %d %q from %q, want the last good route to a", res.StatusCode, body, res.Header.Get("x-maestro-server"))
	}
	if n := gw.metric(t, "envoy_http_rds_update_rejected"); n < 1 {
		t.Errorf("envoy_http_rds_update_rejected = %v, want >= 1", n)
	}
}

// TestRouterBehaviour drives retries, timeouts, outlier ejection, local
// replies and mirroring through hand-made configs against test backends.
func TestRouterBehaviour(t *testing.T) {
	// Without filters the answer streams through; with a buffering filter
	// it is read whole, over h2c clusters as lists (the router's list
	// path): both must behave alike.
	t.Run("streamed", func(t *testing.T) { routerBehaviour(t, false) })
	t.Run("buffered", func(t *testing.T) { routerBehaviour(t, true) })
}

// passChain is a chain with the pass filter, and the gateway option that
// loads it.
func passChain(t *testing.T) (*hcmv3.HttpFilter, *corev3.TypedExtensionConfig, func(*gateway.Config)) {
	f := &hcmv3.HttpFilter{Name: "edge.pass", ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
		ConfigSource: ads(), TypeUrls: []string{xdsconfig.WasmTypeURL}}}}
	ext := &corev3.TypedExtensionConfig{Name: "edge.pass",
		TypedConfig: mustAny(t, &wasmfilterv3.Wasm{Config: &wasmv3.PluginConfig{Name: "pass", Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{
			Runtime: "envoy.wasm.runtime.v8", Code: &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Local{Local: &corev3.DataSource{
				Specifier: &corev3.DataSource_Filename{Filename: "pass.wasm"}}}}}}}})}
	load := func(c *gateway.Config) {
		c.LoadFilter = func(context.Context, *xdsconfig.WasmFilter, *upstream.Manager) (gateway.Filter, error) {
			return passFilter{}, nil
		}
	}
	return f, ext, load
}

func routerBehaviour(t *testing.T, buffered bool) {
	cp := startFakeCP(t)
	flaky := startBackend(t, "flaky", func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	down := startBackend(t, "down", func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "backend down", http.StatusServiceUnavailable)
	})
	slowFirst := startBackend(t, "slow-first", func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			<-r.Context().Done()
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	hang := startBackend(t, "hang", func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	good := startBackend(t, "good", ok200)
	bad := startBackend(t, "bad", func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	shadow := startBackend(t, "shadow", func(_ int, w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(strings.Split(r.Host, ":")[0], "-shadow") {
			w.WriteHeader(http.StatusBadRequest)
		}
	})

	retry := func(on string, n uint32, perTry time.Duration) *routev3.RetryPolicy {
		p := &routev3.RetryPolicy{RetryOn: on, NumRetries: wrapperspb.UInt32(n)}
		if perTry > 0 {
			p.PerTryTimeout = durationpb.New(perTry)
		}
		return p
	}
	action := func(cluster string, timeout time.Duration, rp *routev3.RetryPolicy) *routev3.RouteAction {
		a := toCluster(cluster)
		a.Timeout, a.RetryPolicy = durationpb.New(timeout), rp
		return a
	}
	mirrored := action("good", 5*time.Second, nil)
	mirrored.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow",
		RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}, RuntimeKey: "mirror"}}}
	routes := routeTable(
		prefixRoute("flaky", "/flaky", action("flaky", 5*time.Second, retry("5xx", 2, 0))),
		prefixRoute("down", "/down", action("down", 5*time.Second, retry("5xx", 1, 0))),
		prefixRoute("slow-first", "/slow-first", action("slow-first", 5*time.Second, retry("reset", 1, 100*time.Millisecond))),
		prefixRoute("hang", "/hang", action("hang", 100*time.Millisecond, nil)),
		prefixRoute("pair", "/pair", action("pair", 5*time.Second, nil)),
		prefixRoute("mirrored", "/mirrored", mirrored),
	)
	pair := edsCluster(t, "pair", false)
	pair.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(3), Interval: durationpb.New(10 * time.Second),
		BaseEjectionTime: durationpb.New(30 * time.Second), MaxEjectionPercent: wrapperspb.UInt32(50)}
	var clusters []*clusterv3.Cluster
	var eps []*endpointv3.ClusterLoadAssignment
	for _, b := range []*backend{flaky, down, slowFirst, hang, good, shadow} {
		clusters = append(clusters, edsCluster(t, b.name, true))
		eps = append(eps, endpoints(t, b.name, b.addr))
	}
	clusters = append(clusters, pair)
	eps = append(eps, endpoints(t, "pair", good.addr, bad.addr))
	l, opt := edgeListener(t), func(*gateway.Config) {}
	res := resources(l, routes, clusters, eps)
	if buffered {
		var f *hcmv3.HttpFilter
		var ext *corev3.TypedExtensionConfig
		f, ext, opt = passChain(t)
		res = resources(edgeListener(t, f), routes, clusters, eps)
		res[resource.ExtensionConfigType] = append(res[resource.ExtensionConfigType], ext)
	}
	cp.set(t, "gw", res)
	gw := startGateway(t, "gw", cp.addr, opt)
	base := "http://" + gw.waitLive(t)

	t.Run("retry 5xx until success", func(t *testing.T) {
		res, _ := get(t, http.DefaultClient, base+"/flaky")
		if res.StatusCode != http.StatusOK || flaky.count() != 3 {
			t.Fatalf("got %d after %d upstream tries, want 200 after 3", res.StatusCode, flaky.count())
		}
		if n := gw.metric(t, `envoy_cluster_upstream_rq_retry{envoy_cluster_name="flaky"}`); n != 2 {
			t.Errorf("upstream_rq_retry = %v, want 2", n)
		}
		if n := gw.metric(t, `envoy_cluster_upstream_rq_xx{envoy_response_code_class="5",envoy_cluster_name="flaky"}`); n != 2 {
			t.Errorf("upstream_rq_xx 5 = %v, want 2", n)
		}
	})
	t.Run("retries exhausted pass the answer through", func(t *testing.T) {
		res, body := get(t, http.DefaultClient, base+"/down")
		if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "backend down") || down.count() != 2 {
			t.Fatalf("got %d %q after %d tries, want the backend's 503 after 2", res.StatusCode, body, down.count())
		}
	})
	t.Run("per-try timeout retries", func(t *testing.T) {
		res, _ := get(t, http.DefaultClient, base+"/slow-first")
		if res.StatusCode != http.StatusOK || slowFirst.count() != 2 {
			t.Fatalf("got %d after %d tries, want 200 after 2", res.StatusCode, slowFirst.count())
		}
		if n := gw.metric(t, `envoy_cluster_upstream_rq_per_try_timeout{envoy_cluster_name="slow-first"}`); n != 1 {
			t.Errorf("upstream_rq_per_try_timeout = %v, want 1", n)
		}
	})
	t.Run("route timeout answers 504", func(t *testing.T) {
		res, body := get(t, http.DefaultClient, base+"/hang")
		if res.StatusCode != http.StatusGatewayTimeout || body != "upstream request timeout" {
			t.Fatalf("got %d %q, want 504 upstream request timeout", res.StatusCode, body)
		}
		res, _ = get(t, h2cClient(), base+"/hang", "content-type", "application/grpc")
		if res.StatusCode != http.StatusOK || res.Header.Get("grpc-status") != "14" || res.Header.Get("grpc-message") != "upstream%20request%20timeout" {
			t.Fatalf("gRPC timeout got %d grpc-status %q message %q, want 200 with 14 (UNAVAILABLE)", res.StatusCode, res.Header.Get("grpc-status"), res.Header.Get("grpc-message"))
		}
	})
	t.Run("no route", func(t *testing.T) {
		res, _ := get(t, http.DefaultClient, base+"/nowhere")
		if res.StatusCode != http.StatusNotFound {
			t.Fatalf("got %d, want 404", res.StatusCode)
		}
		res, _ = get(t, h2cClient(), base+"/nowhere", "content-type", "application/grpc")
		if res.Header.Get("grpc-status") != "12" {
			t.Fatalf("gRPC no route got grpc-status %q, want 12 (UNIMPLEMENTED)", res.Header.Get("grpc-status"))
		}
	})
	t.Run("outlier ejection", func(t *testing.T) {
		var last []int
		for i := range 20 {
			res, _ := get(t, http.DefaultClient, base+"/pair")
			if i >= 10 {
				last = append(last, res.StatusCode)
			}
		}
		if bad.count() != 3 {
			t.Errorf("the failing host got %d requests, want 3 (ejected after 3 consecutive 5xx)", bad.count())
		}
		for _, c := range last {
			if c != http.StatusOK {
				t.Fatalf("after ejection got statuses %v, want all 200", last)
			}
		}
		if n := gw.metric(t, `envoy_cluster_outlier_detection_ejections_enforced_total{envoy_cluster_name="pair"}`); n != 1 {
			t.Errorf("ejections_enforced_total = %v, want 1", n)
		}
	})
	t.Run("mirror", func(t *testing.T) {
		const n = 10
		for range n {
			if res, _ := get(t, http.DefaultClient, base+"/mirrored"); res.StatusCode != http.StatusOK {
				t.Fatalf("mirrored route answered %d", res.StatusCode)
			}
		}
		deadline := time.Now().Add(waitLimit)
		for shadow.count() < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // polling a condition, bounded
		}
		if shadow.count() != n {
			t.Fatalf("shadow got %d copies, want %d", shadow.count(), n)
		}
		// The mirror counts its answer after the shadow server has
		// counted the request: wait for the stat too. The shadow answers
		// 2xx only to a host header carrying -shadow.
		waitMetric(t, gw, `envoy_cluster_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="shadow"}`, n)
	})
}

// passFilter is a FilterLoader stand-in for a wasm filter that changes
// nothing; it makes the chain a buffering one.
type passFilter struct{}

func (passFilter) NewStream(context.Context) (router.FilterStream, error) { return passStream{}, nil }
func (passFilter) Close() error                                           { return nil }

type passStream struct{}

func (passStream) OnRequest(context.Context, *router.Message, string) (*router.LocalReply, error) {
	return nil, nil
}
func (passStream) OnResponse(context.Context, *router.Message) (*router.LocalReply, error) {
	return nil, nil
}
func (passStream) Done() {}

func TestBufferLimitAnswers413WithABufferingFilter(t *testing.T) {
	cp := startFakeCP(t)
	b := startBackend(t, "a", ok200)
	f, ext, load := passChain(t)
	res := resources(edgeListener(t, f), routeTable(prefixRoute("api", "/", toCluster("a"))), []*clusterv3.Cluster{edsCluster(t, "a", false)},
		[]*endpointv3.ClusterLoadAssignment{endpoints(t, "a", b.addr)})
	res[resource.ExtensionConfigType] = append(res[resource.ExtensionConfigType], ext)
	cp.set(t, "gw", res)
	gw := startGateway(t, "gw", cp.addr, load)
	base := "http://" + gw.waitLive(t)
	for _, tc := range []struct {
		size int
		want int
	}{{router.DefaultBufferLimit, http.StatusOK}, {router.DefaultBufferLimit + 1, http.StatusRequestEntityTooLarge}} {
		resp, err := http.Post(base+"/v2/models/m/infer", "application/json", bytes.NewReader(make([]byte, tc.size)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("body of %d bytes: got %d, want %d", tc.size, resp.StatusCode, tc.want)
		}
	}
}

// TestRESTAndGRPCOnOnePort sends OIP REST (HTTP/1.1) and OIP gRPC (h2c)
// to one AUTO-codec listener, each routed to the inference server's port
// for its protocol.
func TestRESTAndGRPCOnOnePort(t *testing.T) {
	repo := e2etest.ModelRepo(t)
	srv := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1", ModelDir: repo})
	cp := startFakeCP(t)
	grpcRoute := &routev3.Route{Name: "fraud", Match: &routev3.RouteMatch{
		PathSpecifier: &routev3.RouteMatch_Path{Path: "/inference.GRPCInferenceService/ModelInfer"},
		Grpc:          &routev3.RouteMatch_GrpcRouteMatchOptions{},
		Headers: []*routev3.HeaderMatcher{{Name: "x-maestro-model", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "fraud"}}}}}},
		Action: &routev3.Route_Route{Route: toCluster("fraud.grpc")}}
	cp.set(t, "gw", resources(edgeListener(t), routeTable(grpcRoute, prefixRoute("fraud.rest", "/v2/models/fraud/", toCluster("fraud.rest"))),
		[]*clusterv3.Cluster{edsCluster(t, "fraud.grpc", true), edsCluster(t, "fraud.rest", false)},
		[]*endpointv3.ClusterLoadAssignment{endpoints(t, "fraud.grpc", srv.GRPCAddr), endpoints(t, "fraud.rest", srv.HTTPAddr)}))
	gw := startGateway(t, "gw", cp.addr, nil)
	addr := gw.waitLive(t)

	body := `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`
	res, err := http.Post("http://"+addr+"/v2/models/fraud/infer", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.ProtoMajor != 1 || !strings.Contains(string(b), `"outputs"`) {
		t.Fatalf("REST infer got %d over HTTP/%d: %s", res.StatusCode, res.ProtoMajor, b)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := counts(t, pb.NewGRPCInferenceServiceClient(conn), "fraud", 5); got["fraud-v1"] != 5 {
		t.Fatalf("gRPC infer answered by %v", got)
	}
	for _, c := range []string{"fraud.grpc", "fraud.rest"} {
		if v := gw.metric(t, `envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="`+c+`"}`); v == 0 {
			t.Errorf("cluster %s counted no 200", c)
		}
	}
}

// collector is a fake OTLP trace collector.
type collector struct {
	coltrace.UnimplementedTraceServiceServer
	spans chan *tracev1.Span
}

func (c *collector) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans <- s
			}
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

// TestTracingExportsSpansAndPropagates checks the HCM's tracing: the
// upstream gets a traceparent of the gateway's span, and the span reaches
// the collector cluster over OTLP.
func TestTracingExportsSpansAndPropagates(t *testing.T) {
	col := &collector{spans: make(chan *tracev1.Span, 16)}
	gs := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(gs, col)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	seen := make(chan string, 1)
	b := startBackend(t, "a", func(_ int, w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("traceparent")
	})

	cp := startFakeCP(t)
	l := edgeListener(t)
	m := &hcmv3.HttpConnectionManager{}
	if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(m); err != nil {
		t.Fatal(err)
	}
	m.Tracing = &hcmv3.HttpConnectionManager_Tracing{RandomSampling: &typev3.Percent{Value: 100}, Provider: &tracev3.Tracing_Http{
		Name: "envoy.tracers.opentelemetry", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(t, &tracev3.OpenTelemetryConfig{
			GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "otel"}}},
			ServiceName: "edge-test"})}}}
	l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, m)}
	cp.set(t, "gw", resources(l, routeTable(prefixRoute("api", "/", toCluster("a"))),
		[]*clusterv3.Cluster{edsCluster(t, "a", false), edsCluster(t, "otel", true)},
		[]*endpointv3.ClusterLoadAssignment{endpoints(t, "a", b.addr), endpoints(t, "otel", ln.Addr().String())}))
	gw := startGateway(t, "gw", cp.addr, nil)
	addr := gw.waitLive(t)

	if res, _ := get(t, http.DefaultClient, "http://"+addr+"/traced"); res.StatusCode != http.StatusOK {
		t.Fatalf("got %d", res.StatusCode)
	}
	tp := <-seen
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || parts[3] != "01" {
		t.Fatalf("upstream traceparent %q, want a sampled W3C traceparent", tp)
	}
	select {
	case s := <-col.spans:
		if got := hex.EncodeToString(s.GetTraceId()); got != parts[1] || hex.EncodeToString(s.GetSpanId()) != parts[2] {
			t.Fatalf("exported span %s/%x, want the upstream's parent %s/%s", got, s.GetSpanId(), parts[1], parts[2])
		}
	case <-time.After(waitLimit):
		t.Fatal("no span reached the collector")
	}
}

// TestHTTPHealthCheckTakesAFailingHostOut runs an active HTTP health check
// on a two-host cluster: the host whose check fails gets no traffic once
// unhealthy_threshold checks failed.
func TestHTTPHealthCheckTakesAFailingHostOut(t *testing.T) {
	healthy := func(ok bool) func(int, http.ResponseWriter, *http.Request) {
		return func(_ int, w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" && !ok {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}
	}
	up := startBackend(t, "up", healthy(true))
	down := startBackend(t, "down", healthy(false))
	c := edsCluster(t, "pair", false)
	c.HealthChecks = []*corev3.HealthCheck{{Timeout: durationpb.New(time.Second), Interval: durationpb.New(50 * time.Millisecond),
		UnhealthyThreshold: wrapperspb.UInt32(2), HealthyThreshold: wrapperspb.UInt32(1),
		HealthChecker: &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{Path: "/healthz"}}}}
	cp := startFakeCP(t)
	cp.set(t, "gw", resources(edgeListener(t), routeTable(prefixRoute("api", "/", toCluster("pair"))), []*clusterv3.Cluster{c},
		[]*endpointv3.ClusterLoadAssignment{endpoints(t, "pair", up.addr, down.addr)}))
	gw := startGateway(t, "gw", cp.addr, nil)
	base := "http://" + gw.waitLive(t)
	waitMetric(t, gw, `envoy_cluster_membership_healthy{envoy_cluster_name="pair"}`, 1)
	for range 10 {
		if res, _ := get(t, http.DefaultClient, base+"/work"); res.Header.Get("x-maestro-server") != "up" {
			t.Fatalf("request answered by %q, want the healthy host only", res.Header.Get("x-maestro-server"))
		}
	}
}

// TestCircuitBreakerAndMissingFilterConfig checks two local replies: a
// cluster at max_requests answers 503 overflow, and a listener whose ECDS
// config has not arrived answers 500, as Envoy's missing-config filter.
func TestCircuitBreakerAndMissingFilterConfig(t *testing.T) {
	release := make(chan struct{})
	hang := startBackend(t, "hang", func(_ int, _ http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/first" {
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c := edsCluster(t, "hang", false)
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxRequests: wrapperspb.UInt32(1)}}}
	cp := startFakeCP(t)
	cp.set(t, "gw", resources(edgeListener(t), routeTable(prefixRoute("api", "/", toCluster("hang"))), []*clusterv3.Cluster{c},
		[]*endpointv3.ClusterLoadAssignment{endpoints(t, "hang", hang.addr)}))
	gw := startGateway(t, "gw", cp.addr, nil)
	base := "http://" + gw.waitLive(t)
	first := make(chan int, 1)
	go func() {
		res, err := http.Get(base + "/first")
		if err != nil {
			first <- 0
			return
		}
		res.Body.Close()
		first <- res.StatusCode
	}()
	waitMetric(t, gw, `envoy_cluster_upstream_rq_active{envoy_cluster_name="hang"}`, 1)
	res, body := get(t, http.DefaultClient, base+"/second")
	if res.StatusCode != http.StatusServiceUnavailable || !strings.HasSuffix(body, "reset reason: overflow") {
		t.Fatalf("over max_requests got %d %q, want 503 overflow", res.StatusCode, body)
	}
	if v := gw.metric(t, `envoy_cluster_upstream_rq_pending_overflow{envoy_cluster_name="hang"}`); v != 1 {
		t.Errorf("upstream_rq_pending_overflow = %v, want 1", v)
	}
	release <- struct{}{}
	if code := <-first; code != http.StatusOK {
		t.Errorf("the first request got %d", code)
	}

	// A listener whose filter config never comes: LDS is ACKed, requests
	// get 500.
	l := edgeListener(t, &hcmv3.HttpFilter{Name: "edge.absent", ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
		ConfigSource: ads(), TypeUrls: []string{xdsconfig.WasmTypeURL}}}})
	cp.set(t, "gw", resources(l, routeTable(prefixRoute("api", "/", toCluster("hang"))), []*clusterv3.Cluster{c},
		[]*endpointv3.ClusterLoadAssignment{endpoints(t, "hang", hang.addr)}))
	deadline := time.Now().Add(waitLimit)
	for {
		res, _ := get(t, http.DefaultClient, base+"/x")
		if res.StatusCode == http.StatusInternalServerError {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("without its filter config the listener answers %d, want 500", res.StatusCode)
		}
		time.Sleep(10 * time.Millisecond) // the new listener config is applied asynchronously; bounded poll
	}
}
