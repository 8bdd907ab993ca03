package fanout_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/wasmfilter/fanout"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/combine"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/fanouttest"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

var fraudMembers = []string{"fraud.v1", "fraud.v2", "fraud-logistic.v1"}

// strategyRoutes gives each strategy its settings over the three fraud
// members.
func strategyRoutes() map[string]func(r *filterconfig.FanoutRoute) {
	weights := func(r *filterconfig.FanoutRoute, w ...float64) {
		for i := range r.Members {
			r.Members[i].Weight = w[i]
		}
	}
	return map[string]func(r *filterconfig.FanoutRoute){
		"mean":          func(r *filterconfig.FanoutRoute) { r.Strategy = filterconfig.StrategyMean },
		"weighted_mean": func(r *filterconfig.FanoutRoute) { r.Strategy = filterconfig.StrategyWeightedMean; weights(r, 3, 1, 2) },
		// The demo models score these inputs between 0.006 and 0.26; a
		// threshold of 0.15 makes the members disagree on several rows.
		"majority_vote": func(r *filterconfig.FanoutRoute) { r.Strategy = filterconfig.StrategyMajorityVote; r.Threshold = 0.15 },
		"weighted_vote": func(r *filterconfig.FanoutRoute) {
			r.Strategy, r.Threshold = filterconfig.StrategyWeightedVote, 0.15
			weights(r, 1, 1, 3)
		},
		"max_confidence": func(r *filterconfig.FanoutRoute) { r.Strategy = filterconfig.StrategyMaxConfidence },
		"stacking": func(r *filterconfig.FanoutRoute) {
			r.Strategy = filterconfig.StrategyStacking
			r.Stacking = &filterconfig.Stacking{Weights: []float64{2, 1.5, -0.5}, Bias: -1}
		},
	}
}

// expected computes, from each member's own answer, what the ensemble must
// answer.
func expected(t *testing.T, r *filterconfig.FanoutRoute, answers []*oip.Response) oip.Tensor {
	t.Helper()
	as := make([]combine.Answer, len(answers))
	var like *oip.Tensor
	for i, resp := range answers {
		a, out, err := fanout.AnswerOf(r, i, resp)
		if err != nil {
			t.Fatal(err)
		}
		as[i] = a
		if like == nil {
			like = out
		}
	}
	res, err := fanout.Combine(r, as)
	if err != nil {
		t.Fatal(err)
	}
	if res.Classes {
		// A vote that cannot tell the strategies apart proves little.
		seen := map[float64]bool{}
		for _, v := range res.Values {
			seen[v] = true
		}
		if len(seen) < 2 {
			t.Fatalf("every row votes %v: the test inputs do not exercise the vote", res.Values)
		}
	}
	return fanout.CombinedTensor(like, res)
}

func sameTensor(t *testing.T, got, want oip.Tensor) {
	t.Helper()
	if got.Name != want.Name || got.Datatype != want.Datatype || len(got.Values) != len(want.Values) ||
		len(got.Shape) != len(want.Shape) {
		t.Fatalf("output %s %s %v (%d values), want %s %s %v (%d values)", got.Name, got.Datatype, got.Shape, len(got.Values),
			want.Name, want.Datatype, want.Shape, len(want.Values))
	}
	for i := range got.Shape {
		if got.Shape[i] != want.Shape[i] {
			t.Fatalf("shape %v, want %v", got.Shape, want.Shape)
		}
	}
	for i := range got.Values {
		if got.Values[i] != want.Values[i] {
			t.Fatalf("value %d = %v, want %v\n got %v\nwant %v", i, got.Values[i], want.Values[i], got.Values, want.Values)
		}
	}
}

// grpcOutput turns the client's decoded response output into a Tensor.
func grpcOutput(t *testing.T, resp *pb.ModelInferResponse) oip.Tensor {
	t.Helper()
	if len(resp.Outputs) != 1 {
		t.Fatalf("%d outputs, want 1", len(resp.Outputs))
	}
	o := resp.Outputs[0]
	out := oip.Tensor{Name: o.Name, Datatype: o.Datatype, Shape: o.Shape}
	for _, v := range o.GetContents().GetFp32Contents() {
		out.Values = append(out.Values, float64(v))
	}
	for _, v := range o.GetContents().GetInt64Contents() {
		out.Values = append(out.Values, float64(v))
	}
	out.Values = append(out.Values, o.GetContents().GetFp64Contents()...)
	return out
}

func TestEnsembleMatchesDirectCombination(t *testing.T) {
	// The module is compiled (about a second, far more on a loaded
	// machine) before any deadline starts, and each subtest gets its own
	// deadline: twelve round trips must not share one budget.
	wasmtest.Load(t, fanouttest.Pkg)
	f := startFraud(t)
	in := features(12)
	restAnswers := make([]*oip.Response, len(fraudMembers))
	grpcAnswers := make([]*oip.Response, len(fraudMembers))
	for i, n := range fraudMembers {
		restAnswers[i] = directREST(t, f.members[n], []oip.Tensor{in})
		grpcAnswers[i] = directGRPC(t, testCtx(t), f.members[n], []oip.Tensor{in})
	}
	for name, edit := range strategyRoutes() {
		for _, grpc := range []bool{false, true} {
			proto := map[bool]string{false: "rest", true: "grpc"}[grpc]
			t.Run(proto+"/"+name, func(t *testing.T) {
				ctx := testCtx(t)
				r := filterconfig.FanoutRoute{Route: "fraud", Members: f.routeMembers(grpc, fraudMembers...), TimeoutMs: 10000}
				edit(&r)
				if grpc {
					r.Primary = grpcCluster("fraud.v2")
				}
				vm := fanouttest.NewVM(t, f.clusters, r)
				var got oip.Tensor
				var answered, latency string
				if grpc {
					resp, err := vm.RoundTrip(ctx, r.Primary, grpcRequest(t, "fraud", in))
					if err != nil {
						t.Fatal(err)
					}
					if st := resp.Trailer("grpc-status"); st != "0" {
						t.Fatalf("grpc-status %q: %s", st, resp.Trailer("grpc-message"))
					}
					pbResp := decodeGRPCBody(t, resp.Body)
					got = grpcOutput(t, pbResp)
					answered, latency = resp.Trailer(fanout.HeaderAnswered), resp.Trailer(fanout.HeaderLatency)
					if p := pbResp.Parameters[fanout.ParamAnswered].GetStringParam(); p != answered {
						t.Errorf("parameter %s = %q, trailer %q", fanout.ParamAnswered, p, answered)
					}
					if pbResp.ModelName != "fraud" || pbResp.Id != "req-1" {
						t.Errorf("response names model %q id %q", pbResp.ModelName, pbResp.Id)
					}
					if !r.Sequence {
						memberScores(t, pbResp.Parameters[fanout.ParamMembers].GetStringParam(), &r, grpcAnswers)
					}
					sameTensor(t, got, expected(t, &r, grpcAnswers))
				} else {
					resp, err := vm.RoundTrip(ctx, "fraud.v1", restRequest(t, "fraud", in))
					if err != nil {
						t.Fatal(err)
					}
					out := okJSON(t, resp)
					got = out.Outputs[0]
					answered, latency = resp.Header(fanout.HeaderAnswered), resp.Header(fanout.HeaderLatency)
					if resp.Header(fanout.HeaderMissing) != "" {
						t.Errorf("missing header %q with every member up", resp.Header(fanout.HeaderMissing))
					}
					if out.ModelName != "fraud" || out.ID != "req-1" {
						t.Errorf("response names model %q id %q", out.ModelName, out.ID)
					}
					sameTensor(t, got, expected(t, &r, restAnswers))
				}
				if answered != strings.Join(fraudMembers, ",") {
					t.Errorf("answered = %q", answered)
				}
				if n := len(strings.Split(latency, ",")); n != 3 || !strings.Contains(latency, "fraud.v1=") {
					t.Errorf("latency report %q", latency)
				}
				for _, m := range r.Members {
					if n := vm.Stats().Value(fanout.MemberMetric("answers_total", "fraud", m.Name)); n != 1 {
						t.Errorf("member %s answers counter = %d, want 1", m.Name, n)
					}
				}
			})
		}
	}
}

func TestSlowMemberExcludedAndReported(t *testing.T) {
	f := startFraud(t)
	in := features(6)
	slow := f.members["fraud-logistic.v1"]
	clusters := map[string]wasmtest.Cluster{}
	for k, v := range f.clusters {
		clusters[k] = v
	}
	// The slow member answers only when the test ends, long after the
	// route's timeout.
	restAddr, _ := heldProxy(t, slow.srv.HTTPAddr)
	grpcAddr, _ := heldProxy(t, slow.srv.GRPCAddr)
	clusters["fraud-logistic.v1"] = wasmtest.Cluster{Address: restAddr}
	clusters[grpcCluster("fraud-logistic.v1")] = wasmtest.Cluster{Address: grpcAddr, HTTP2: true}
	for _, grpc := range []bool{false, true} {
		t.Run(map[bool]string{false: "rest", true: "grpc"}[grpc], func(t *testing.T) {
			ctx := testCtx(t)
			r := filterconfig.FanoutRoute{Route: "fraud", Members: f.routeMembers(grpc, fraudMembers...),
				Strategy: filterconfig.StrategyMean, Quorum: 2, TimeoutMs: 400}
			if grpc {
				r.Primary = grpcCluster("fraud.v1")
			}
			vm := fanouttest.NewVM(t, clusters, r)
			// What the two members that answer in time say on their own.
			two := filterconfig.FanoutRoute{Members: r.Members[:2], Strategy: r.Strategy}
			want := expected(t, &two, []*oip.Response{
				directREST(t, f.members["fraud.v1"], []oip.Tensor{in}), directREST(t, f.members["fraud.v2"], []oip.Tensor{in})})
			var got oip.Tensor
			var missing, answered string
			if grpc {
				resp, err := vm.RoundTrip(ctx, r.Primary, grpcRequest(t, "fraud", in))
				if err != nil {
					t.Fatal(err)
				}
				if st := resp.Trailer("grpc-status"); st != "0" {
					t.Fatalf("grpc-status %q: %s", st, resp.Trailer("grpc-message"))
				}
				got = grpcOutput(t, decodeGRPCBody(t, resp.Body))
				missing, answered = resp.Trailer(fanout.HeaderMissing), resp.Trailer(fanout.HeaderAnswered)
			} else {
				resp, err := vm.RoundTrip(ctx, "fraud.v1", restRequest(t, "fraud", in))
				if err != nil {
					t.Fatal(err)
				}
				got = okJSON(t, resp).Outputs[0]
				missing, answered = resp.Header(fanout.HeaderMissing), resp.Header(fanout.HeaderAnswered)
			}
			sameTensor(t, got, want)
			if answered != "fraud.v1,fraud.v2" {
				t.Errorf("answered = %q", answered)
			}
			if missing != "fraud-logistic.v1 (timeout after 400ms)" {
				t.Errorf("missing = %q", missing)
			}
			if n := vm.Stats().Value(fanout.MemberMetric("timeouts_total", "fraud", "fraud-logistic.v1")); n != 1 {
				t.Errorf("timeouts counter = %d, want 1", n)
			}
		})
	}
}

func TestUnderQuorumFails(t *testing.T) {
	f := startFraud(t)
	in := features(2)
	clusters := map[string]wasmtest.Cluster{}
	for k, v := range f.clusters {
		clusters[k] = v
	}
	dead := deadAddress(t)
	clusters["fraud-logistic.v1"] = wasmtest.Cluster{Address: dead}
	clusters[grpcCluster("fraud-logistic.v1")] = wasmtest.Cluster{Address: dead, HTTP2: true}
	const wantMsg = "fanout: quorum not met: 2 of 3 members answered, 3 needed; missing: fraud-logistic.v1 ("
	for _, grpc := range []bool{false, true} {
		t.Run(map[bool]string{false: "rest", true: "grpc"}[grpc], func(t *testing.T) {
			ctx := testCtx(t)
			r := filterconfig.FanoutRoute{Route: "fraud", Members: f.routeMembers(grpc, fraudMembers...), TimeoutMs: 5000}
			if grpc {
				r.Primary = grpcCluster("fraud.v1")
			}
			vm := fanouttest.NewVM(t, clusters, r)
			if grpc {
				resp, err := vm.RoundTrip(ctx, r.Primary, grpcRequest(t, "fraud", in))
				if err != nil {
					t.Fatal(err)
				}
				if st := resp.Trailer("grpc-status"); st != "14" {
					t.Fatalf("grpc-status %q, want 14 (UNAVAILABLE)", st)
				}
				if msg := resp.Trailer("grpc-message"); !strings.HasPrefix(msg, wantMsg) {
					t.Errorf("grpc-message %q\nwant prefix %q", msg, wantMsg)
				}
				if len(resp.Body) != 0 {
					t.Errorf("UNAVAILABLE response still carries %d body bytes", len(resp.Body))
				}
			} else {
				resp, err := vm.RoundTrip(ctx, "fraud.v1", restRequest(t, "fraud", in))
				if err != nil {
					t.Fatal(err)
				}
				if resp.Status != 503 {
					t.Fatalf("status %d, want 503: %s", resp.Status, resp.Body)
				}
				if !strings.Contains(string(resp.Body), wantMsg) {
					t.Errorf("body %s\nlacks %q", resp.Body, wantMsg)
				}
			}
			if n := vm.Stats().Value(fanout.RouteMetric("quorum_failures_total", "fraud")); n != 1 {
				t.Errorf("quorum_failures = %d, want 1", n)
			}
		})
	}
}

func TestBadRequestsAreRejected(t *testing.T) {
	f := startFraud(t)
	tests := map[string]struct {
		grpc bool
		req  wasmtest.Request
		want string
	}{
		"rest not json": {req: wasmtest.Request{Method: "POST", Path: "/v2/models/fraud/infer", Body: []byte("{")}, want: "request body"},
		"rest shape": {req: wasmtest.Request{Method: "POST", Path: "/v2/models/fraud/infer",
			Body: []byte(`{"inputs":[{"name":"features","shape":[2,30],"datatype":"FP32","data":[1]}]}`)}, want: `shape [2 30] needs 60 elements`},
		"rest no body": {req: wasmtest.Request{Method: "POST", Path: "/v2/models/fraud/infer"}, want: "no body"},
		"grpc garbage": {grpc: true, req: wasmtest.Request{Method: "POST", Path: "/inference.GRPCInferenceService/ModelInfer",
			Headers: [][2]string{{"content-type", "application/grpc"}}, Body: oip.Frame([]byte{0xff, 0xff, 0xff})}, want: "ModelInferRequest"},
		"grpc frame": {grpc: true, req: wasmtest.Request{Method: "POST", Path: "/inference.GRPCInferenceService/ModelInfer",
			Headers: [][2]string{{"content-type", "application/grpc"}}, Body: []byte{0, 0, 0, 0, 9}}, want: "grpc frame says 9 bytes"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			r := filterconfig.FanoutRoute{Route: "fraud", Members: f.routeMembers(tc.grpc, fraudMembers...)}
			vm := fanouttest.NewVM(t, f.clusters, r)
			cluster := "fraud.v1"
			if tc.grpc {
				cluster = grpcCluster(cluster)
			}
			resp, err := vm.RoundTrip(ctx, cluster, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Local == nil {
				t.Fatalf("no local reply; status %d", resp.Status)
			}
			if tc.grpc {
				if resp.Local.GRPCStatus != 3 {
					t.Errorf("grpc status %d, want 3 (INVALID_ARGUMENT)", resp.Local.GRPCStatus)
				}
			} else if resp.Status != 400 {
				t.Errorf("status %d, want 400", resp.Status)
			}
			if !strings.Contains(string(resp.Local.Body), tc.want) {
				t.Errorf("reply %q lacks %q", resp.Local.Body, tc.want)
			}
			if n := vm.Stats().Value(fanout.MemberMetric("answers_total", "fraud", "fraud.v1")); n != 0 {
				t.Errorf("a bad request reached members (%d answers)", n)
			}
		})
	}
}

// TestOtherTrafficPassesThrough checks that requests the filter does not
// handle reach the upstream untouched.
func TestOtherTrafficPassesThrough(t *testing.T) {
	f := startFraud(t)
	ctx := testCtx(t)
	r := filterconfig.FanoutRoute{Route: "fraud", Members: f.routeMembers(false, fraudMembers...)}
	vm := fanouttest.NewVM(t, f.clusters, r)
	resp, err := vm.RoundTrip(ctx, "fraud.v1", wasmtest.Request{Method: "GET", Path: "/v2/models/fraud/ready"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || resp.Local != nil || resp.Header(fanout.HeaderAnswered) != "" {
		t.Fatalf("readiness probe: status %d local %v headers %v", resp.Status, resp.Local, resp.Headers)
	}
}

// TestGRPCPrimaryFailure: the primary's own error arrives as a
// trailers-only response, so there is no body to carry a result; the
// client gets UNAVAILABLE naming the primary, in the headers.
func TestGRPCPrimaryFailure(t *testing.T) {
	f := startFraud(t)
	for name, quorum := range map[string]uint32{"quorum met by the others": 2, "below quorum": 3} {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			r := filterconfig.FanoutRoute{Route: "fraud", Members: f.routeMembers(true, fraudMembers...), Quorum: quorum,
				TimeoutMs: 5000, Primary: grpcCluster("fraud.v1")}
			r.Members[0].Model = "no-such-model"
			vm := fanouttest.NewVM(t, f.clusters, r)
			resp, err := vm.RoundTrip(ctx, r.Primary, grpcRequest(t, "fraud", features(2)))
			if err != nil {
				t.Fatal(err)
			}
			st, msg := resp.Header("grpc-status"), resp.Header("grpc-message")
			if st == "" {
				st, msg = resp.Trailer("grpc-status"), resp.Trailer("grpc-message")
			}
			if st != "14" {
				t.Fatalf("grpc-status %q (%s), want 14", st, msg)
			}
			if !strings.Contains(msg, "fraud.v1 (grpc status 5") {
				t.Errorf("grpc-message %q does not name the primary's failure", msg)
			}
			if quorum == 2 && !strings.Contains(msg, "the primary member fraud.v1 failed") {
				t.Errorf("grpc-message %q does not explain the primary", msg)
			}
			if got := vm.Stats().Value(fanout.MemberMetric("failures_total", "fraud", "fraud.v1")); got != 1 {
				t.Errorf("primary failures counter = %d", got)
			}
		})
	}
}

// TestMemberErrorIsReported: a member answering with an error status is
// left out, with the server's own error text in the report.
func TestMemberErrorIsReported(t *testing.T) {
	f := startFraud(t)
	ctx := testCtx(t)
	r := filterconfig.FanoutRoute{Route: "fraud", Members: f.routeMembers(false, fraudMembers...), Quorum: 2, TimeoutMs: 5000}
	r.Members[2].Model = "no-such-model"
	vm := fanouttest.NewVM(t, f.clusters, r)
	resp, err := vm.RoundTrip(ctx, "fraud.v1", restRequest(t, "fraud", features(2)))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	missing := resp.Header(fanout.HeaderMissing)
	if !strings.HasPrefix(missing, "fraud-logistic.v1 (HTTP 404: model error: ") || !strings.Contains(missing, "no-such-model") {
		t.Errorf("missing = %q", missing)
	}
	if got := vm.Stats().Value(fanout.MemberMetric("failures_total", "fraud", "fraud-logistic.v1")); got != 1 {
		t.Errorf("failures counter = %d", got)
	}
}

// TestChunkedRequestBody: a request body that reaches the filter in several
// chunks (data frames) is buffered until its end and then answered like
// one sent at once, over REST and gRPC.
func TestChunkedRequestBody(t *testing.T) {
	f := startFraud(t)
	in := features(12)
	for _, grpc := range []bool{false, true} {
		t.Run(map[bool]string{false: "rest", true: "grpc"}[grpc], func(t *testing.T) {
			ctx := testCtx(t)
			r := filterconfig.FanoutRoute{Route: "fraud", Members: f.routeMembers(grpc, fraudMembers...),
				Strategy: filterconfig.StrategyMean, TimeoutMs: 10000}
			answers := make([]*oip.Response, len(fraudMembers))
			req, cluster := restRequest(t, "fraud", in), "fraud.v1"
			for i, n := range fraudMembers {
				answers[i] = directREST(t, f.members[n], []oip.Tensor{in})
				if grpc {
					answers[i] = directGRPC(t, ctx, f.members[n], []oip.Tensor{in})
				}
			}
			if grpc {
				r.Primary = grpcCluster("fraud.v2")
				req, cluster = grpcRequest(t, "fraud", in), r.Primary
			}
			req.ChunkSize = len(req.Body)/3 + 1 // three chunks
			resp, err := fanouttest.NewVM(t, f.clusters, r).RoundTrip(ctx, cluster, req)
			if err != nil {
				t.Fatal(err)
			}
			var got oip.Tensor
			if grpc {
				if st := resp.Trailer("grpc-status"); st != "0" {
					t.Fatalf("grpc-status %q: %s", st, resp.Trailer("grpc-message"))
				}
				got = grpcOutput(t, decodeGRPCBody(t, resp.Body))
			} else {
				got = okJSON(t, resp).Outputs[0]
			}
			sameTensor(t, got, expected(t, &r, answers))
		})
	}
}

// okJSON decodes a REST answer the filter sent with status 200.
func okJSON(t *testing.T, resp *wasmtest.Response) *oip.Response {
	t.Helper()
	if resp.Status != 200 {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	out, err := oip.DecodeJSONResponse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// memberScores checks the members' scores parameter against each member's
// own answer: every member's label and its first scores, in member order.
func memberScores(t *testing.T, got string, r *filterconfig.FanoutRoute, direct []*oip.Response) {
	t.Helper()
	var want []string
	for i, m := range r.Members {
		vals := direct[i].Outputs[0].Values
		parts := make([]string, 0, fanout.MaxMemberScores)
		for _, v := range vals[:min(len(vals), fanout.MaxMemberScores)] {
			parts = append(parts, strconv.FormatFloat(v, 'g', 6, 64))
		}
		want = append(want, m.Label()+"="+strings.Join(parts, " "))
	}
	if w := strings.Join(want, ";"); got != w {
		t.Errorf("parameter %s = %q, want %q", fanout.ParamMembers, got, w)
	}
}

// TestMetricsCountedOnEveryRequest checks the per-route metric slots: the
// request, answer and latency metrics of a route count every fan-out on
// one VM, and a member's timeout and failure counters are still defined
// only when one happens.
func TestMetricsCountedOnEveryRequest(t *testing.T) {
	f := startFraud(t)
	ctx := testCtx(t)
	r := filterconfig.FanoutRoute{Route: "fraud", Members: f.routeMembers(true, fraudMembers[:2]...),
		Primary: grpcCluster("fraud.v1"), TimeoutMs: 10000}
	vm := fanouttest.NewVM(t, f.clusters, r)
	const n = 3
	for range n {
		resp, err := vm.RoundTrip(ctx, grpcCluster("fraud.v1"), grpcRequest(t, "fraud", features(1)))
		if err != nil {
			t.Fatal(err)
		}
		if st := resp.Trailer("grpc-status"); st != "0" {
			t.Fatalf("grpc-status %q", st)
		}
	}
	if got := vm.Stats().Value(fanout.RouteMetric("requests_total", "fraud")); got != n {
		t.Errorf("requests_total = %d, want %d", got, n)
	}
	for _, m := range r.Members {
		if got := vm.Stats().Value(fanout.MemberMetric("answers_total", "fraud", m.Name)); got != n {
			t.Errorf("%s answers_total = %d, want %d", m.Name, got, n)
		}
		if h, ok := vm.Stats().Get(fanout.MemberMetric("latency_ms", "fraud", m.Name)); !ok || len(h.Samples) != n {
			t.Errorf("%s latency_ms: defined %v, %d samples, want %d", m.Name, ok, len(h.Samples), n)
		}
		for _, name := range []string{"timeouts_total", "failures_total"} {
			if _, ok := vm.Stats().Get(fanout.MemberMetric(name, "fraud", m.Name)); ok {
				t.Errorf("%s %s defined with no timeout or failure", m.Name, name)
			}
		}
	}
}
