package fanout_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/wasmfilter/fanout"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/fanouttest"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// passThrough delivers a whole unary exchange to a new stream on route
// and checks that the filter let every part through untouched.
func passThrough(t *testing.T, vm *wasmtest.VM, route string, ex *wasmtest.Exchange) {
	t.Helper()
	s, err := vm.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	defer endStream(t, s)
	s.SetProperty("xds.route_name", []byte(route))
	steps := []struct {
		name string
		run  func() (pw.Action, error)
	}{
		{"request headers", func() (pw.Action, error) { return s.RequestHeaders(ex.RequestHeaders, false) }},
		{"request body", func() (pw.Action, error) { return s.RequestBody(ex.RequestBody, true) }},
		{"response headers", func() (pw.Action, error) { return s.ResponseHeaders(ex.ResponseHeaders, false) }},
		{"response body", func() (pw.Action, error) { return s.ResponseBody(ex.ResponseBody, false) }},
		{"response trailers", func() (pw.Action, error) { return s.ResponseTrailers(ex.ResponseTrailers) }},
	}
	for _, st := range steps {
		if a, err := st.run(); err != nil || a != pw.ActionContinue {
			t.Fatalf("%s: %v %v, want continue", st.name, a, err)
		}
	}
	if s.LocalResponse() != nil || s.RouteCacheCleared() {
		t.Fatalf("local response %v, route cache cleared %v: want neither", s.LocalResponse(), s.RouteCacheCleared())
	}
	same := func(what string, got, want [][2]string) {
		if !slices.Equal(got, want) {
			t.Errorf("%s changed: %q, want %q", what, got, want)
		}
	}
	same("request headers", s.RequestHeaderMap(), ex.RequestHeaders)
	same("response headers", s.ResponseHeaderMap(), ex.ResponseHeaders)
	same("response trailers", s.ResponseTrailerMap(), ex.ResponseTrailers)
	if !bytes.Equal(s.RequestBodyBytes(), ex.RequestBody) || !bytes.Equal(s.ResponseBodyBytes(), ex.ResponseBody) {
		t.Error("a body changed")
	}
}

// TestPassThroughLeavesStreamsAlone: on a VM that also fans out, requests
// whose route has no fan-out settings pass untouched (the filter reads only
// the model header and the route), while requests without the model header
// still get it from the message and ensemble requests are still fanned
// out, in any order: stream contexts are reused between such requests, and
// none may carry anything over.
func TestPassThroughLeavesStreamsAlone(t *testing.T) {
	f := startFraud(t)
	ctx := testCtx(t)
	r := filterconfig.FanoutRoute{Route: "fraud-ensemble", Members: f.routeMembers(true, fraudMembers...),
		TimeoutMs: 10000, Primary: grpcCluster("fraud.v1")}
	cfg := filterconfig.Fanout{Routes: []filterconfig.FanoutRoute{r}, ModelRouting: gatewayRouting()}
	// RoundTrip's streams take the VM's route; the others set their own.
	vm := fanouttest.NewVMWith(t, f.clusters, cfg, r.Route)
	plain := passThroughExchange(t)
	plain.RequestHeaders = append(slices.Clone(plain.RequestHeaders), [2]string{"content-length", "999"})
	rest := restRequest(t, "fraud", features(1))
	restPlain := &wasmtest.Exchange{
		RequestHeaders:  append([][2]string{{":method", "POST"}, {":path", rest.Path}, {":authority", "edge"}}, rest.Headers...),
		RequestBody:     rest.Body,
		ResponseHeaders: [][2]string{{":status", "200"}, {"content-type", "application/json"}},
		ResponseBody:    []byte(`{"model_name":"fraud","outputs":[]}`),
	}
	derive, body := grpcCall(t, "ModelInfer", &pb.ModelInferRequest{ModelName: "fraud"})
	ensemble := grpcRequest(t, "fraud-ensemble", features(1))
	ensemble.Headers = append(ensemble.Headers, [2]string{modelHeader, "fraud-ensemble"})
	const rounds = 3
	for round := range rounds {
		for range 2 {
			passThrough(t, vm, "fraud", plain)
		}
		passThrough(t, vm, "fraud-rest", restPlain)

		s, err := vm.NewStream()
		if err != nil {
			t.Fatal(err)
		}
		s.SetProperty("xds.route_name", []byte("default"))
		if a, err := s.RequestHeaders(derive, false); err != nil || a != pw.ActionPause {
			t.Fatalf("round %d: headers without the model header: %v %v, want them held", round, a, err)
		}
		if a, err := s.RequestBody(body, true); err != nil || a != pw.ActionContinue {
			t.Fatalf("round %d: body: %v %v, want continue", round, a, err)
		}
		if v, _ := header(s.RequestHeaderMap(), modelHeader); v != "fraud" || !s.RouteCacheCleared() {
			t.Fatalf("round %d: %s = %q (route cache cleared %v), want fraud", round, modelHeader, v, s.RouteCacheCleared())
		}
		endStream(t, s)

		resp, err := vm.RoundTrip(ctx, r.Primary, ensemble)
		if err != nil {
			t.Fatal(err)
		}
		if st := resp.Trailer("grpc-status"); st != "0" || resp.Trailer(fanout.HeaderAnswered) != strings.Join(fraudMembers, ",") {
			t.Fatalf("round %d: ensemble: grpc-status %q answered %q: %s", round, st,
				resp.Trailer(fanout.HeaderAnswered), resp.Trailer("grpc-message"))
		}
	}
	stats := vm.Stats()
	if got := stats.Value(fanout.RouteMetric("requests_total", r.Route)); got != rounds {
		t.Errorf("requests_total of the ensemble route = %d, want %d", got, rounds)
	}
	for _, name := range stats.Names() {
		if !strings.Contains(name, ".route."+r.Route) {
			t.Errorf("stat %s: only the ensemble route may have stats", name)
		}
	}
}

// TestAnswersAfterAResetNeverReachTheNextStream: a client that goes away
// mid-fan-out leaves its members' answers in flight; the stream's context
// is reused for the next stream, and the late answers must reach neither
// (the binding drops answers for a deleted stream), while fan-outs after
// them work as ever.
func TestAnswersAfterAResetNeverReachTheNextStream(t *testing.T) {
	f := startFraud(t)
	ctx := testCtx(t)
	clusters := map[string]wasmtest.Cluster{}
	for k, v := range f.clusters {
		clusters[k] = v
	}
	held, release := heldProxy(t, f.members["fraud.v2"].srv.HTTPAddr)
	clusters["fraud.v2"] = wasmtest.Cluster{Address: held}
	r := filterconfig.FanoutRoute{Route: "fraud", Members: f.routeMembers(false, fraudMembers...), TimeoutMs: 10000}
	vm := fanouttest.NewVM(t, clusters, r)
	req := restRequest(t, "fraud", features(1))
	headers := append([][2]string{{":method", "POST"}, {":path", req.Path}, {":authority", "edge"}}, req.Headers...)

	gone, err := vm.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	if a, err := gone.RequestHeaders(headers, false); err != nil || a != pw.ActionPause {
		t.Fatalf("request headers: %v %v, want the fan-out to hold them", a, err)
	}
	if _, err := gone.RequestBody(req.Body, true); err != nil {
		t.Fatal(err)
	}
	endStream(t, gone) // the client resets: the members are still out

	next, err := vm.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	next.SetProperty("xds.route_name", []byte("other"))
	if a, err := next.RequestHeaders(headers, false); err != nil || a != pw.ActionContinue {
		t.Fatalf("next stream: %v %v, want it let through", a, err)
	}
	release()
	if err := vm.AwaitCallouts(ctx); err != nil { // the late answers
		t.Fatal(err)
	}
	if a, err := next.RequestBody(req.Body, true); err != nil || a != pw.ActionContinue || next.LocalResponse() != nil {
		t.Fatalf("next stream after the late answers: %v %v, local response %v", a, err, next.LocalResponse())
	}
	endStream(t, next)

	resp, err := vm.RoundTrip(ctx, "fraud.v1", req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || resp.Header(fanout.HeaderAnswered) != strings.Join(fraudMembers, ",") {
		t.Fatalf("fan-out after the reset: status %d, answered %q", resp.Status, resp.Header(fanout.HeaderAnswered))
	}
	stats := vm.Stats()
	if got := stats.Value(fanout.RouteMetric("requests_total", "fraud")); got != 2 {
		t.Errorf("requests_total = %d, want 2", got)
	}
	// Only the completed fan-out's answers count; the reset one's were dropped.
	if got := stats.Value(fanout.MemberMetric("answers_total", "fraud", "fraud.v1")); got != 1 {
		t.Errorf("answers of fraud.v1 = %d, want 1", got)
	}
}
