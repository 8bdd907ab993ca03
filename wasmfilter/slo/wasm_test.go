package slo_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/runtime/builtin"
	"github.com/maestro-ml/maestro/wasmfilter/slo"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

const sloPkg = "github.com/maestro-ml/maestro/wasmfilter/slo/cmd"

// faultProxy fronts a real server the way Envoy's fault filter would:
// x-fault-status answers that status without forwarding, x-fault-delay-ms
// holds the request before forwarding it.
func faultProxy(t *testing.T, target string) string {
	t.Helper()
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := r.Header.Get("x-fault-status"); s != "" {
			code, _ := strconv.Atoi(s)
			http.Error(w, "injected fault", code)
			return
		}
		if d := r.Header.Get("x-fault-delay-ms"); d != "" {
			ms, _ := strconv.Atoi(d)
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func features() []float32 {
	f := make([]float32, 30)
	for i := range f {
		f[i] = float32(i) / 30
	}
	return f
}

func restInfer(model string, fault ...[2]string) wasmtest.Request {
	body, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{
		"name": "features", "datatype": "FP32", "shape": []int{1, 30}, "data": features()}}})
	h := [][2]string{{"content-type", "application/json"}}
	return wasmtest.Request{Method: "POST", Path: "/v2/models/" + model + "/infer", Headers: append(h, fault...), Body: body}
}

func grpcInfer(t *testing.T, model string) wasmtest.Request {
	t.Helper()
	msg, err := proto.Marshal(&pb.ModelInferRequest{ModelName: model, Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "features", Datatype: "FP32", Shape: []int64{1, 30},
		Contents: &pb.InferTensorContents{Fp32Contents: features()}}}})
	if err != nil {
		t.Fatal(err)
	}
	n := len(msg)
	frame := append([]byte{0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, msg...)
	return wasmtest.Request{Method: "POST", Path: "/inference.GRPCInferenceService/ModelInfer",
		Headers: [][2]string{{"content-type", "application/grpc"}, {"te", "trailers"}}, Body: frame}
}

const sloConfig = `{"objectives":[{"route":"fraud-route","availability":0.99,
  "latency":[{"percentile":90,"thresholdMs":40}],"budgetHeader":"x-slo-budget"}]}`

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newVM(t *testing.T, cfg wasmtest.Config) *wasmtest.VM {
	t.Helper()
	vm, err := wasmtest.Load(t, sloPkg).NewVM(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

var routeProps = map[string][]byte{"xds.route_name": []byte("fraud-route")}

func TestSLOStatsMatchRequestsSent(t *testing.T) {
	srv := inferencetest.Start(t, inferencetest.Options{Registry: builtin.Registry()})
	clusters := map[string]wasmtest.Cluster{
		"rest": {Address: faultProxy(t, srv.HTTPAddr)},
		"grpc": {Address: srv.GRPCAddr, HTTP2: true},
	}
	vm := newVM(t, wasmtest.Config{PluginConfig: []byte(sloConfig), Clusters: clusters, Properties: routeProps})
	const delayMs = 60
	fault := func(k string, v int) [2]string { return [2]string{k, strconv.Itoa(v)} }
	sends := []struct {
		cluster    string
		req        wasmtest.Request
		wantStatus int
		wantGRPC   string
	}{
		{"rest", restInfer("fraud"), 200, ""},
		{"rest", restInfer("fraud"), 200, ""},
		{"rest", restInfer("fraud", fault("x-fault-status", 503)), 503, ""},
		{"rest", restInfer("fraud", fault("x-fault-status", 500)), 500, ""},
		{"rest", restInfer("fraud", fault("x-fault-delay-ms", delayMs)), 200, ""},
		{"rest", restInfer("fraud", fault("x-fault-delay-ms", delayMs)), 200, ""},
		{"rest", restInfer("fraud", fault("x-fault-status", 429)), 429, ""},
		{"grpc", grpcInfer(t, "fraud"), 200, "0"},
		{"grpc", grpcInfer(t, "fraud"), 200, "0"},
		{"grpc", grpcInfer(t, "no-such-model"), 200, "5"},
	}
	for i, s := range sends {
		resp, err := vm.RoundTrip(ctxFor(t), s.cluster, s.req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		grpcStatus := resp.Trailer("grpc-status")
		if grpcStatus == "" {
			grpcStatus = resp.Header("grpc-status")
		}
		if resp.Status != s.wantStatus || grpcStatus != s.wantGRPC {
			t.Fatalf("request %d: status %d grpc-status %q, want %d %q: %s", i, resp.Status, grpcStatus, s.wantStatus, s.wantGRPC, resp.Body)
		}
	}
	stats := vm.Stats()
	name := func(metric, model string, extra ...string) string {
		return slo.StatName(metric, "fraud-route", model, extra...)
	}
	// fraud: 7 REST + 2 gRPC requests, errors are the 503 and the 500 (a
	// 429 is the client's fault); no-such-model: 1 request, NOT_FOUND.
	for _, c := range []struct {
		model          string
		requests, errs uint64
	}{{"fraud", 9, 2}, {"no-such-model", 1, 1}} {
		if got := stats.Value(name("requests_total", c.model)); got != c.requests {
			t.Errorf("%s requests = %d, want %d", c.model, got, c.requests)
		}
		if got := stats.Value(name("errors_total", c.model)); got != c.errs {
			t.Errorf("%s errors = %d, want %d", c.model, got, c.errs)
		}
		if got := len(stats.Samples(name("latency_ms", c.model))); got != int(c.requests) {
			t.Errorf("%s latency samples = %d, want %d", c.model, got, c.requests)
		}
	}
	// The injected delays show in the histogram, and the slow counter
	// agrees with the histogram about requests over the 40ms target.
	var delayed, over40 uint64
	for _, ms := range stats.Samples(name("latency_ms", "fraud")) {
		if ms >= delayMs {
			delayed++
		}
		if ms > 40 {
			over40++
		}
	}
	if delayed < 2 {
		t.Errorf("samples >= %dms = %d, want at least the 2 delayed requests: %v", delayMs, delayed,
			stats.Samples(name("latency_ms", "fraud")))
	}
	if got := stats.Value(name("slow_requests_total", "fraud", "target.p90_40ms")); got != over40 {
		t.Errorf("slow counter = %d, histogram says %d", got, over40)
	}

	// After a tick the budget header reports the long window: 2 errors in
	// 9 requests against a 1% budget leaves 1 - (2/9)/0.01.
	if err := vm.Tick(); err != nil {
		t.Fatal(err)
	}
	resp, err := vm.RoundTrip(ctxFor(t), "rest", restInfer("fraud"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.Header("x-slo-budget"), fmt.Sprintf("%.4f", 1-(2.0/9)/0.01); got != want {
		t.Fatalf("x-slo-budget = %q, want %q", got, want)
	}
}

// TestSLOBurnRateSharedAcrossVMs runs two VMs as two Envoy workers sharing
// data and stats: each sees part of the traffic, the burn rate is computed
// over both, and each crossing is logged exactly once.
func TestSLOBurnRateSharedAcrossVMs(t *testing.T) {
	srv := inferencetest.Start(t, inferencetest.Options{Registry: builtin.Registry()})
	clusters := map[string]wasmtest.Cluster{"rest": {Address: faultProxy(t, srv.HTTPAddr)}}
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	cfg := `{"objectives":[{"route":"fraud-route","model":"fraud","availability":0.9,
	  "shortWindowSeconds":60,"longWindowSeconds":600,"shortBurnThreshold":2,"longBurnThreshold":1.5}]}`
	shared, stats := wasmtest.NewSharedData(), wasmtest.NewStats()
	vms := make([]*wasmtest.VM, 2)
	for i := range vms {
		vms[i] = newVM(t, wasmtest.Config{PluginConfig: []byte(cfg), Clusters: clusters, Properties: routeProps,
			Shared: shared, Stats: stats, Clock: clock})
	}
	send := func(vm *wasmtest.VM, n int, fault ...[2]string) {
		t.Helper()
		for i := 0; i < n; i++ {
			if _, err := vm.RoundTrip(ctxFor(t), "rest", restInfer("fraud", fault...)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tickAll := func() {
		t.Helper()
		for _, vm := range vms {
			if err := vm.Tick(); err != nil {
				t.Fatal(err)
			}
		}
	}
	burnLogs := func(kind string) []string {
		var out []string
		for _, vm := range vms {
			for _, l := range vm.Logs() {
				if strings.Contains(l.Message, kind) {
					out = append(out, l.Message)
				}
			}
		}
		return out
	}
	send(vms[0], 6)
	send(vms[1], 4, [2]string{"x-fault-status", "503"})
	tickAll()
	tickAll() // a second evaluation must not log again
	// 4 errors in 10 requests against a 10% budget: burn 4 on both windows.
	above := burnLogs("above threshold")
	if len(above) != 2 || !strings.Contains(above[0], "window=short(1m0s) burn_rate=4.00 threshold=2.00 bad=4 total=10") ||
		!strings.Contains(above[1], "window=long(10m0s) burn_rate=4.00 threshold=1.50 bad=4 total=10") {
		t.Fatalf("above-threshold logs = %q", above)
	}
	short := slo.StatName("burn_rate_x1000", "fraud-route", "fraud", "window.short")
	if got := stats.Value(short); got != 4000 {
		t.Fatalf("short burn gauge = %d", got)
	}
	// Two minutes later the short window is clean; the long one still burns.
	now.Add(int64(2 * time.Minute))
	send(vms[1], 5)
	tickAll()
	under := burnLogs("back under threshold")
	if len(under) != 1 || !strings.Contains(under[0], "window=short(1m0s) burn_rate=0.00") {
		t.Fatalf("back-under logs = %q", under)
	}
	if got := stats.Value(slo.StatName("requests_total", "fraud-route", "fraud")); got != 15 {
		t.Fatalf("requests across both VMs = %d", got)
	}
}

func TestSLORejectsBadConfiguration(t *testing.T) {
	_, err := wasmtest.Load(t, sloPkg).NewVM(context.Background(),
		wasmtest.Config{PluginConfig: []byte(`{"objectives":[{"availability":2}]}`)})
	if err == nil || !strings.Contains(err.Error(), "objectives[0].availability: must be between 0 and 1 exclusive") {
		t.Fatalf("err = %v", err)
	}
}

func TestSLOFlushesWhenThePluginStops(t *testing.T) {
	srv := inferencetest.Start(t, inferencetest.Options{Registry: builtin.Registry()})
	shared := wasmtest.NewSharedData()
	vm, err := wasmtest.Load(t, sloPkg).NewVM(context.Background(), wasmtest.Config{PluginConfig: []byte(sloConfig),
		Clusters: map[string]wasmtest.Cluster{"rest": {Address: srv.HTTPAddr}}, Properties: routeProps, Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := vm.RoundTrip(ctxFor(t), "rest", restInfer("fraud")); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, ok := shared.Get("maestro_slo\x00fraud-route\x00fraud"); ok {
		t.Fatal("counts reached shared data before any tick")
	}
	if err := vm.Close(); err != nil {
		t.Fatal(err)
	}
	v, _, ok := shared.Get("maestro_slo\x00fraud-route\x00fraud")
	if !ok {
		t.Fatal("no shared record after the plugin stopped")
	}
	var rec slo.Record
	if err := rec.UnmarshalBinary(v); err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, b := range rec.Buckets {
		total += b.Total
	}
	if total != 3 {
		t.Fatalf("shared record counts %d requests, want 3", total)
	}
}

// TestSLORouteChosenAfterRequestHeaders: for a gRPC client that names its
// model only in the message, Envoy has no route when the request headers
// pass (the fanout filter sets the model header from the body, and the
// router picks the route afterwards); the request is metered under the
// route the router chose, as the response sees it.
func TestSLORouteChosenAfterRequestHeaders(t *testing.T) {
	vm := newVM(t, wasmtest.Config{PluginConfig: []byte(sloConfig)})
	s, err := vm.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	req := grpcInfer(t, "fraud")
	headers := append([][2]string{{":method", "POST"}, {":path", req.Path}, {":authority", "edge"}}, req.Headers...)
	if _, err := s.RequestHeaders(headers, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequestBody(req.Body, true); err != nil {
		t.Fatal(err)
	}
	s.SetProperty("xds.route_name", []byte("fraud-route"))
	if _, err := s.ResponseHeaders([][2]string{{":status", "200"}, {"content-type", "application/grpc"}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResponseTrailers([][2]string{{"grpc-status", "0"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Done(); err != nil {
		t.Fatal(err)
	}
	stats := vm.Stats()
	if got := stats.Value(slo.StatName("requests_total", "fraud-route", "fraud")); got != 1 {
		t.Errorf("requests under the router's route = %d, want 1; stats %v", got, stats.Names())
	}
	if got := stats.Value(slo.StatName("requests_total", "", "fraud")); got != 0 {
		t.Errorf("requests under no route = %d, want 0", got)
	}
}

// TestSLOStreamWithoutResponseKeepsItsRoute: a stream that ends with no
// response headers (a reset, a local failure) reads its route when it is
// done, and counts as an error of that route.
func TestSLOStreamWithoutResponseKeepsItsRoute(t *testing.T) {
	vm := newVM(t, wasmtest.Config{PluginConfig: []byte(sloConfig), Properties: routeProps})
	s, err := vm.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	headers := [][2]string{{":method", "POST"}, {":path", "/v2/models/fraud/infer"}, {":authority", "edge"}}
	if _, err := s.RequestHeaders(headers, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Done(); err != nil {
		t.Fatal(err)
	}
	stats := vm.Stats()
	for _, metric := range []string{"requests_total", "errors_total"} {
		if got := stats.Value(slo.StatName(metric, "fraud-route", "fraud")); got != 1 {
			t.Errorf("%s under the route = %d, want 1; stats %v", metric, got, stats.Names())
		}
	}
}

// TestStreamsStartClean: stream contexts are reused from one request to
// the next, and none may carry anything over: a gRPC request whose message
// names no model after one that named fraud is metered as model "none", a
// request after a failed one is no error, and a model whose name does not
// fit the first read of the body is still found.
func TestStreamsStartClean(t *testing.T) {
	vm := newVM(t, wasmtest.Config{PluginConfig: []byte(sloConfig), Properties: routeProps})
	named := grpcExchange()
	anonymous := grpcExchange()
	anonymous.RequestBody = append([]byte{0, 0, 0, 0, 7}, 0x1a, 5, 'r', 'e', 'q', '-', '1') // only an id
	failed := grpcExchange()
	failed.ResponseTrailers = [][2]string{{"grpc-status", "14"}}
	longName := strings.Repeat("m", 200)
	long := grpcExchange()
	long.RequestBody = append([]byte{0, 0, 0, 0, 203, 0x0a, 200, 1}, longName...)
	for _, ex := range []*wasmtest.Exchange{named, anonymous, failed, named, long, anonymous} {
		if err := ex.Run(vm, nil); err != nil {
			t.Fatal(err)
		}
	}
	stats := vm.Stats()
	for _, c := range []struct {
		model          string
		requests, errs uint64
	}{{"fraud", 3, 1}, {"none", 2, 0}, {longName[:64], 1, 0}} {
		if got := stats.Value(slo.StatName("requests_total", "fraud-route", c.model)); got != c.requests {
			t.Errorf("model %q: %d requests, want %d", c.model, got, c.requests)
		}
		if got := stats.Value(slo.StatName("errors_total", "fraud-route", c.model)); got != c.errs {
			t.Errorf("model %q: %d errors, want %d", c.model, got, c.errs)
		}
	}
}

// TestShutdownMergesUncountedRequests: requests metered since the last
// tick reach the shared record when the host shuts the plugin down
// (proxy_on_done).
func TestShutdownMergesUncountedRequests(t *testing.T) {
	shared := wasmtest.NewSharedData()
	vm, err := wasmtest.Load(t, sloPkg).NewVM(context.Background(), wasmtest.Config{
		PluginConfig: []byte(sloConfig), Properties: routeProps, Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	failed := grpcExchange()
	failed.ResponseTrailers = [][2]string{{"grpc-status", "13"}}
	for _, ex := range []*wasmtest.Exchange{grpcExchange(), failed, grpcExchange()} {
		if err := ex.Run(vm, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := vm.Close(); err != nil {
		t.Fatal(err)
	}
	value, _, ok := shared.Get("maestro_slo\x00fraud-route\x00fraud")
	if !ok {
		t.Fatal("no shared record after shutdown")
	}
	var rec slo.Record
	if err := rec.UnmarshalBinary(value); err != nil {
		t.Fatal(err)
	}
	var total, errs uint64
	for _, b := range rec.Buckets {
		total, errs = total+b.Total, errs+b.Errors
	}
	if total != 3 || errs != 1 {
		t.Fatalf("shared record holds %d requests, %d errors; want 3 and 1", total, errs)
	}
}

// grpcExchange is a unary gRPC ModelInfer through the gateway, as slo.wasm
// sees it on a metered route: the model is named in the message.
func grpcExchange() *wasmtest.Exchange {
	// ModelInferRequest{model_name: "fraud", id: "req-1"} and a small
	// response: slo reads only the request's first field.
	msg := []byte{0x0a, 5, 'f', 'r', 'a', 'u', 'd', 0x1a, 5, 'r', 'e', 'q', '-', '1'}
	msg = append(msg, make([]byte, 200)...) // inputs, as bytes slo skips
	msg[14], msg[15] = 0x2a, 198            // field 5 (inputs), length 198
	frame := func(m []byte) []byte {
		return append([]byte{0, 0, 0, byte(len(m) >> 8), byte(len(m))}, m...)
	}
	return &wasmtest.Exchange{
		RequestHeaders: [][2]string{{":method", "POST"}, {":scheme", "http"},
			{":path", "/inference.GRPCInferenceService/ModelInfer"}, {":authority", "127.0.0.1:8080"},
			{"content-type", "application/grpc"}, {"user-agent", "grpc-go/1.78.0"}, {"te", "trailers"},
			{"x-maestro-model", "fraud"}},
		RequestBody:      frame(msg),
		ResponseHeaders:  [][2]string{{":status", "200"}, {"content-type", "application/grpc"}},
		ResponseBody:     frame(make([]byte, 40)),
		ResponseTrailers: [][2]string{{"grpc-status", "0"}, {"grpc-message", ""}},
	}
}
