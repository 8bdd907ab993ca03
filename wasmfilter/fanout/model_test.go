package fanout_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/wasmfilter/fanout"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/fanouttest"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

const modelHeader = "x-maestro-model"

// gatewayRouting is what the control plane gives the filter of a gateway
// whose routes select fraud-ensemble and fraud (with a rule) by model.
func gatewayRouting() *filterconfig.ModelRouting {
	return &filterconfig.ModelRouting{Header: modelHeader, Routes: []filterconfig.ModelRoute{
		{Route: "fraud-ensemble", Model: "fraud-ensemble"},
		{Route: "fraud.beta", Model: "fraud", Headers: []filterconfig.HeaderMatch{{Name: "x-beta", Present: true}}},
		{Route: "fraud", Model: "fraud"},
	}}
}

// grpcCall is a gRPC request as a standard OIP client sends it: the model
// named only in the message.
func grpcCall(t *testing.T, method string, msg proto.Message, extra ...[2]string) ([][2]string, []byte) {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	h := [][2]string{{":method", "POST"}, {":path", "/inference.GRPCInferenceService/" + method}, {":authority", "edge"},
		{"content-type", "application/grpc"}, {"te", "trailers"}}
	return append(h, extra...), oip.Frame(b)
}

func header(h [][2]string, name string) (string, bool) {
	for _, kv := range h {
		if kv[0] == name {
			return kv[1], true
		}
	}
	return "", false
}

// TestStandardClientGetsModelHeader: ModelInfer, ModelReady and
// ModelMetadata requests that name their model only in the message are
// held in the headers (a real pause: the control plane sets
// allow_on_headers_stop_iteration with model routing) until the first
// message arrives, then get the model header and go on unchanged; the body
// may arrive in pieces, the name split across them.
func TestStandardClientGetsModelHeader(t *testing.T) {
	in := features(2)
	inferMsg := &pb.ModelInferRequest{ModelName: "fraud", Id: "r1", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: in.Name, Datatype: in.Datatype, Shape: in.Shape, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2}}}}}
	tests := map[string]struct {
		method string
		msg    proto.Message
		chunk  int // body chunk size; 0 sends it whole
	}{
		"infer":            {"ModelInfer", inferMsg, 0},
		"infer in pieces":  {"ModelInfer", inferMsg, 7}, // the name spans two pieces
		"ready":            {"ModelReady", &pb.ModelReadyRequest{Name: "fraud"}, 0},
		"metadata":         {"ModelMetadata", &pb.ModelMetadataRequest{Name: "fraud", Version: "2"}, 0},
		"metadata, 1 byte": {"ModelMetadata", &pb.ModelMetadataRequest{Name: "fraud"}, 1},
	}
	vm := fanouttest.NewVMWith(t, nil, filterconfig.Fanout{ModelRouting: gatewayRouting()}, "")
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			headers, body := grpcCall(t, tc.method, tc.msg)
			s, err := vm.NewStream()
			if err != nil {
				t.Fatal(err)
			}
			defer endStream(t, s)
			if a, err := s.RequestHeaders(headers, false); err != nil || a != pw.ActionPause {
				t.Fatalf("request headers: %v %v, want the headers held", a, err)
			}
			chunk := tc.chunk
			if chunk == 0 {
				chunk = len(body)
			}
			released := false
			for off := 0; off < len(body); off += chunk {
				end := min(off+chunk, len(body))
				a, err := s.RequestBody(body[off:end], end == len(body))
				if err != nil {
					t.Fatal(err)
				}
				_, set := header(s.RequestHeaderMap(), modelHeader)
				switch {
				case released && a != pw.ActionContinue:
					t.Fatalf("piece ending at %d held again: %v", end, a)
				case !released && a == pw.ActionContinue:
					// What was held goes on unchanged, with the header.
					released = true
					if !set || !bytes.Equal(s.RequestBodyBytes(), body[:end]) {
						t.Fatalf("released after %d bytes: header set %v, body %x, want %x", end, set, s.RequestBodyBytes(), body[:end])
					}
					// Envoy clears the route cache: the router will pick
					// the route by the new header.
					if !s.RouteCacheCleared() {
						t.Fatalf("header set without clearing the route cache")
					}
				case !released && set:
					t.Fatalf("header set but the request still held after %d bytes", end)
				}
			}
			if !released || s.Paused(false) {
				t.Fatalf("request still held after the body")
			}
			if v, _ := header(s.RequestHeaderMap(), modelHeader); v != "fraud" {
				t.Errorf("%s = %q, want fraud", modelHeader, v)
			}
		})
	}
}

// TestModelHeaderKeptOrNotNeeded: requests that already carry the header,
// REST calls (routed by path) and gRPC methods that name no model pass at
// once and keep their headers; without model routing (Istio, which cannot
// enable the headers pause) nothing is held either, as a pause there would
// stop the request until Envoy's idle timeout.
func TestModelHeaderKeptOrNotNeeded(t *testing.T) {
	withHeader, body := grpcCall(t, "ModelInfer", &pb.ModelInferRequest{ModelName: "fraud"}, [2]string{modelHeader, "churn"})
	plain, _ := grpcCall(t, "ModelInfer", &pb.ModelInferRequest{ModelName: "fraud"})
	live, liveBody := grpcCall(t, "ServerLive", &pb.ServerLiveRequest{})
	rest := restRequest(t, "fraud", features(1))
	restHeaders := append([][2]string{{":method", "POST"}, {":path", rest.Path}, {":authority", "edge"}}, rest.Headers...)
	tests := map[string]struct {
		routing *filterconfig.ModelRouting
		headers [][2]string
		body    []byte
		want    string // the model header after the request; "" absent
	}{
		"header already set":   {gatewayRouting(), withHeader, body, "churn"},
		"rest":                 {gatewayRouting(), restHeaders, rest.Body, ""},
		"method without model": {gatewayRouting(), live, liveBody, ""},
		"no model routing":     {nil, plain, body, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			vm := fanouttest.NewVMWith(t, nil, filterconfig.Fanout{ModelRouting: tc.routing}, "")
			s, err := vm.NewStream()
			if err != nil {
				t.Fatal(err)
			}
			defer endStream(t, s)
			if a, err := s.RequestHeaders(tc.headers, false); err != nil || a != pw.ActionContinue {
				t.Fatalf("request headers: %v %v, want continue", a, err)
			}
			if a, err := s.RequestBody(tc.body, true); err != nil || a != pw.ActionContinue {
				t.Fatalf("request body: %v %v, want continue", a, err)
			}
			if v, _ := header(s.RequestHeaderMap(), modelHeader); v != tc.want {
				t.Errorf("%s = %q, want %q", modelHeader, v, tc.want)
			}
			if s.RouteCacheCleared() {
				t.Errorf("request headers changed: the route would be chosen again")
			}
		})
	}
}

// TestModelRoutingNeedsStopIteration shows why the control plane sets
// allow_on_headers_stop_iteration whenever it sends model routing: without
// it, Envoy (like the host) turns the filter's pause in the headers into
// stop-all, holds the body without calling the filter, and the request
// waits until the stream's idle timeout.
func TestModelRoutingNeedsStopIteration(t *testing.T) {
	data, err := json.Marshal(filterconfig.Fanout{ModelRouting: gatewayRouting()})
	if err != nil {
		t.Fatal(err)
	}
	vm, err := wasmtest.Load(t, fanouttest.Pkg).NewVM(t.Context(), wasmtest.Config{PluginConfig: data})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	s, err := vm.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	defer endStream(t, s)
	headers, body := grpcCall(t, "ModelInfer", &pb.ModelInferRequest{ModelName: "fraud"})
	if _, err := s.RequestHeaders(headers, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequestBody(body, true); err != nil {
		t.Fatal(err)
	}
	if _, set := header(s.RequestHeaderMap(), modelHeader); set || !s.Paused(false) {
		t.Fatalf("without the flag: header set %v, paused %v; want the request stopped with no header", set, s.Paused(false))
	}
}

// TestStandardClientEnsemble: a standard client's ModelInfer for an
// ensemble, with no route picked from its headers, is held, given the
// model header, matched to the ensemble's route through the model routing,
// and answered with the members' combination, as with the header.
func TestStandardClientEnsemble(t *testing.T) {
	f := startFraud(t)
	ctx := testCtx(t)
	in := features(8)
	r := filterconfig.FanoutRoute{Route: "fraud-ensemble", Members: f.routeMembers(true, fraudMembers...),
		Strategy: filterconfig.StrategyMean, TimeoutMs: 10000, Primary: grpcCluster("fraud.v2")}
	answers := make([]*oip.Response, len(fraudMembers))
	for i, n := range fraudMembers {
		answers[i] = directGRPC(t, ctx, f.members[n], []oip.Tensor{in})
	}
	cfg := filterconfig.Fanout{Routes: []filterconfig.FanoutRoute{r}, ModelRouting: gatewayRouting()}
	vm := fanouttest.NewVMWith(t, f.clusters, cfg, "")
	req := grpcRequest(t, "fraud-ensemble", in)
	req.ChunkSize = 16 // the name and the tensors arrive in pieces
	resp, err := vm.RoundTrip(ctx, r.Primary, req)
	if err != nil {
		t.Fatal(err)
	}
	if st := resp.Trailer("grpc-status"); st != "0" {
		t.Fatalf("grpc-status %q: %s", st, resp.Trailer("grpc-message"))
	}
	sameTensor(t, grpcOutput(t, decodeGRPCBody(t, resp.Body)), expected(t, &r, answers))
	if got := vm.Stats().Value("maestro_fanout_requests_total.route.fraud-ensemble"); got != 1 {
		t.Errorf("requests_total of the ensemble route = %d, want 1", got)
	}
}

// TestStandardClientModelQueries: a standard client's ModelReady and
// ModelMetadata reach a real server and are answered, for a plain model
// and for an ensemble, whose name no server knows: the ensemble's primary
// member answers for its own model. With or without the model header.
func TestStandardClientModelQueries(t *testing.T) {
	f := startFraud(t)
	ensemble := filterconfig.FanoutRoute{Route: "fraud-ensemble", Members: f.routeMembers(true, fraudMembers...),
		Primary: grpcCluster("fraud.v2")}
	cfg := filterconfig.Fanout{Routes: []filterconfig.FanoutRoute{ensemble}, ModelRouting: gatewayRouting()}
	tests := map[string]struct {
		method  string
		model   string
		header  bool
		cluster string
		check   func(t *testing.T, msg []byte)
	}{
		"ready":                      {"ModelReady", "fraud", false, grpcCluster("fraud.v1"), wantReady},
		"ensemble ready":             {"ModelReady", "fraud-ensemble", false, ensemble.Primary, wantReady},
		"ensemble ready with header": {"ModelReady", "fraud-ensemble", true, ensemble.Primary, wantReady},
		"ensemble metadata":          {"ModelMetadata", "fraud-ensemble", false, ensemble.Primary, wantMetadataOf("fraud")},
		"metadata":                   {"ModelMetadata", "fraud", false, grpcCluster("fraud.v1"), wantMetadataOf("fraud")},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			var m proto.Message = &pb.ModelReadyRequest{Name: tc.model}
			if tc.method == "ModelMetadata" {
				m = &pb.ModelMetadataRequest{Name: tc.model}
			}
			var extra [][2]string
			if tc.header {
				extra = append(extra, [2]string{modelHeader, tc.model})
			}
			headers, body := grpcCall(t, tc.method, m, extra...)
			// With the header, Envoy picks the route from the headers.
			routeName := ""
			if tc.header {
				routeName = tc.model
			}
			vm := fanouttest.NewVMWith(t, f.clusters, cfg, routeName)
			resp, err := vm.RoundTrip(ctx, tc.cluster, wasmtest.Request{Method: "POST", Path: "/inference.GRPCInferenceService/" + tc.method,
				Headers: headers[3:], Body: body})
			if err != nil {
				t.Fatal(err)
			}
			if st := resp.Trailer("grpc-status"); st != "0" {
				t.Fatalf("grpc-status %q: %s", st, resp.Trailer("grpc-message"))
			}
			msg, err := oip.Unframe(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, msg)
		})
	}
}

func wantReady(t *testing.T, msg []byte) {
	t.Helper()
	var ready pb.ModelReadyResponse
	if err := proto.Unmarshal(msg, &ready); err != nil || !ready.Ready {
		t.Fatalf("ModelReady answer %v (%v), want ready", &ready, err)
	}
}

func wantMetadataOf(model string) func(t *testing.T, msg []byte) {
	return func(t *testing.T, msg []byte) {
		t.Helper()
		var md pb.ModelMetadataResponse
		if err := proto.Unmarshal(msg, &md); err != nil || md.Name != model || len(md.Inputs) == 0 {
			t.Fatalf("ModelMetadata answer %v (%v), want %s's", &md, err, model)
		}
	}
}

// TestStandardClientRuleRoute: the model routing is matched as Envoy
// matches routes, first match in order with the rule's own headers, so a
// standard client's request with x-beta takes the fraud.beta rule and its
// shadow, and one without takes fraud, which has none.
func TestStandardClientRuleRoute(t *testing.T) {
	f := startFraud(t)
	ctx := testCtx(t)
	in := features(3)
	beta := shadowRoute(grpcCluster("fraud.v2"), 100)
	beta.Route = "fraud.beta"
	cfg := filterconfig.Fanout{Routes: []filterconfig.FanoutRoute{beta}, ModelRouting: gatewayRouting()}
	vm := fanouttest.NewVMWith(t, f.clusters, cfg, "")
	for _, withBeta := range []bool{true, false, true} {
		req := versionedGRPCRequest(t, in)
		if withBeta {
			req.Headers = append(req.Headers, [2]string{"x-beta", "yes"})
		}
		resp, err := vm.RoundTrip(ctx, grpcCluster("fraud.v1"), req)
		if err != nil {
			t.Fatal(err)
		}
		if st := resp.Trailer("grpc-status"); st != "0" {
			t.Fatalf("grpc-status %q: %s", st, resp.Trailer("grpc-message"))
		}
	}
	if err := vm.AwaitCallouts(ctx); err != nil {
		t.Fatal(err)
	}
	if got := vm.Stats().Value(fanout.ShadowMetric("sent_total", "fraud.beta", "fraud.v2")); got != 2 {
		t.Errorf("shadow copies on fraud.beta = %d, want the 2 requests with x-beta", got)
	}
	if got := vm.Stats().Value(fanout.ShadowMetric("compared_total", "fraud.beta", "fraud.v2")); got != 2 {
		t.Errorf("comparisons on fraud.beta = %d, want 2", got)
	}
}

// endStream ends s as Envoy does at the end of a stream; a filter that
// fails in proxy_on_log or proxy_on_done fails the test.
func endStream(t testing.TB, s *wasmtest.Stream) {
	t.Helper()
	if err := s.Done(); err != nil {
		t.Errorf("end of stream: %v", err)
	}
}
