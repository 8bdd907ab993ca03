package fanout_test

import (
	"bytes"
	"testing"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/wasmfilter/fanout"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/combine"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/fanouttest"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

func shadowRoute(cluster string, percent float64) filterconfig.FanoutRoute {
	return filterconfig.FanoutRoute{Route: "fraud", TimeoutMs: 10000, Shadows: []filterconfig.Shadow{
		{Name: "fraud.v2", Cluster: cluster, Model: "fraud", Version: "2", Percent: percent}}}
}

func versionedGRPCRequest(t *testing.T, in oip.Tensor) wasmtest.Request {
	t.Helper()
	msg, err := oip.EncodeGRPCRequest(&oip.Request{ModelName: "fraud", ModelVersion: "1", Inputs: []oip.Tensor{in}})
	if err != nil {
		t.Fatal(err)
	}
	return wasmtest.Request{Method: "POST", Path: "/inference.GRPCInferenceService/ModelInfer",
		Headers: [][2]string{{"content-type", "application/grpc"}}, Body: oip.Frame(msg)}
}

// TestShadowComparisonMatchesDirectComparison sends traffic for fraud v1
// with fraud v2 as a comparing shadow, answering only after the user's
// response is complete, and checks the counted comparison against one made
// directly from both models' own answers.
func TestShadowComparisonMatchesDirectComparison(t *testing.T) {
	f := startFraud(t)
	in := features(12)
	v1, v2 := f.members["fraud.v1"], f.members["fraud.v2"]
	direct, err := combine.Compare(answer(t, directREST(t, v1, []oip.Tensor{in})), answer(t, directREST(t, v2, []oip.Tensor{in})), 0.15)
	if err != nil {
		t.Fatal(err)
	}
	if direct.Agree == direct.Rows || direct.Agree == 0 {
		t.Fatalf("the models agree on %d of %d rows: the inputs do not exercise the comparison", direct.Agree, direct.Rows)
	}
	for _, grpc := range []bool{false, true} {
		t.Run(map[bool]string{false: "rest", true: "grpc"}[grpc], func(t *testing.T) {
			ctx := testCtx(t)
			// The shadow answers only once the user's response has been
			// checked, so that response cannot have waited for the
			// comparison.
			clusters := map[string]wasmtest.Cluster{}
			for k, v := range f.clusters {
				clusters[k] = v
			}
			r := shadowRoute("shadow", 100)
			r.Threshold = 0.15
			req := restRequest(t, "fraud", in)
			req.Path = oip.InferPathFor("fraud", "1")
			upstream, shadowTarget := "fraud.v1", v2.srv.HTTPAddr
			if grpc {
				r.Shadows[0].Cluster = grpcCluster("shadow")
				req, upstream, shadowTarget = versionedGRPCRequest(t, in), grpcCluster("fraud.v1"), v2.srv.GRPCAddr
			}
			shadowAddr, releaseShadow := heldProxy(t, shadowTarget)
			clusters[r.Shadows[0].Cluster] = wasmtest.Cluster{Address: shadowAddr, HTTP2: grpc}
			vm := fanouttest.NewVM(t, clusters, r)
			resp, err := vm.RoundTrip(ctx, upstream, req)
			if err != nil {
				t.Fatal(err)
			}
			// The user's answer is the primary's own, untouched, and was
			// given before the shadow answered.
			metric := func(name string) string { return fanout.ShadowMetric(name, "fraud", "fraud.v2") }
			if n := vm.Stats().Value(metric("compared_total")); n != 0 {
				t.Fatalf("compared = %d before the shadow answered: the response waited for it", n)
			}
			if resp.Local != nil || resp.Header(fanout.HeaderAnswered) != "" || resp.Trailer(fanout.HeaderAnswered) != "" {
				t.Fatalf("the shadow changed the response: local %v headers %v trailers %v", resp.Local, resp.Headers, resp.Trailers)
			}
			if grpc {
				if resp.Trailer("grpc-status") != "0" {
					t.Fatalf("grpc-status %q", resp.Trailer("grpc-status"))
				}
				sameTensor(t, grpcOutput(t, decodeGRPCBody(t, resp.Body)), directGRPC(t, ctx, v1, []oip.Tensor{in}).Outputs[0])
			} else {
				plain, err := vm.RoundTrip(ctx, upstream, wasmtest.Request{Method: "POST", Path: req.Path, Body: req.Body})
				if err != nil {
					t.Fatal(err)
				}
				if resp.Status != 200 || !bytes.Equal(resp.Body, plain.Body) {
					t.Fatalf("status %d body %s\nwant the primary's own %s", resp.Status, resp.Body, plain.Body)
				}
			}
			releaseShadow()
			if err := vm.AwaitCallouts(ctx); err != nil {
				t.Fatal(err)
			}
			copies := uint64(1)
			if !grpc {
				copies = 2 // the plain request above got a copy too
			}
			want := map[string]uint64{
				"sent_total":                copies,
				"compared_total":            copies,
				"rows_total":                copies * uint64(direct.Rows),
				"class_agree_rows_total":    copies * uint64(direct.Agree),
				"class_disagree_rows_total": copies * uint64(direct.Rows-direct.Agree),
				"abs_diff_micros_total":     copies * fanout.Micros(direct.SumAbsDiff),
				"failures_total":            0,
				"skipped_total":             0,
			}
			for name, w := range want {
				if got := vm.Stats().Value(metric(name)); got != w {
					t.Errorf("%s = %d, want %d", name, got, w)
				}
			}
			samples := vm.Stats().Samples(metric("max_abs_diff_micros"))
			if len(samples) != int(copies) || samples[0] != fanout.Micros(direct.MaxAbsDiff) {
				t.Errorf("max_abs_diff_micros samples %v, want %d x %d", samples, copies, fanout.Micros(direct.MaxAbsDiff))
			}
		})
	}
}

func TestShadowSamplingAndFailures(t *testing.T) {
	f := startFraud(t)
	in := features(2)
	clusters := map[string]wasmtest.Cluster{"fraud.v1": f.clusters["fraud.v1"], "dead": {Address: deadAddress(t)}}
	tests := map[string]struct {
		cluster  string
		percent  float64
		requests int
		want     map[string]uint64
	}{
		"half":       {cluster: "fraud.v1", percent: 50, requests: 6, want: map[string]uint64{"sent_total": 3, "compared_total": 3, "failures_total": 0}},
		"none":       {cluster: "fraud.v1", percent: 0, requests: 3, want: map[string]uint64{"sent_total": 0, "compared_total": 0}},
		"down":       {cluster: "dead", percent: 100, requests: 2, want: map[string]uint64{"sent_total": 2, "failures_total": 2, "skipped_total": 2, "compared_total": 0}},
		"same model": {cluster: "fraud.v1", percent: 100, requests: 1, want: map[string]uint64{"compared_total": 1, "abs_diff_micros_total": 0}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			// The unversioned requests reach fraud's latest version, 2,
			// which is also what the shadow is asked.
			r := shadowRoute(tc.cluster, tc.percent)
			vm := fanouttest.NewVM(t, clusters, r)
			for range tc.requests {
				resp, err := vm.RoundTrip(ctx, "fraud.v1", restRequest(t, "fraud", in))
				if err != nil {
					t.Fatal(err)
				}
				if resp.Status != 200 {
					t.Fatalf("status %d: the shadow must not affect the response", resp.Status)
				}
			}
			if err := vm.AwaitCallouts(ctx); err != nil {
				t.Fatal(err)
			}
			for m, w := range tc.want {
				if got := vm.Stats().Value(fanout.ShadowMetric(m, "fraud", "fraud.v2")); got != w {
					t.Errorf("%s = %d, want %d", m, got, w)
				}
			}
		})
	}
}

// TestEnsembleWithShadowComparesTheCombinedAnswer: on an ensemble route the
// shadow is compared with what the client got, the combination.
func TestEnsembleWithShadowComparesTheCombinedAnswer(t *testing.T) {
	f := startFraud(t)
	ctx := testCtx(t)
	in := features(12)
	r := filterconfig.FanoutRoute{Route: "fraud", Members: f.routeMembers(false, "fraud.v1", "fraud-logistic.v1"),
		Strategy: filterconfig.StrategyMean, TimeoutMs: 10000, Threshold: 0.15,
		Shadows: []filterconfig.Shadow{{Name: "fraud.v2", Cluster: "fraud.v2", Model: "fraud", Version: "2", Percent: 100}}}
	vm := fanouttest.NewVM(t, f.clusters, r)
	resp, err := vm.RoundTrip(ctx, "fraud.v1", restRequest(t, "fraud", in))
	if err != nil {
		t.Fatal(err)
	}
	got, err := oip.DecodeJSONResponse(resp.Body)
	if err != nil {
		t.Fatalf("status %d: %v", resp.Status, err)
	}
	if err := vm.AwaitCallouts(ctx); err != nil {
		t.Fatal(err)
	}
	direct, err := combine.Compare(answer(t, got), answer(t, directREST(t, f.members["fraud.v2"], []oip.Tensor{in})), 0.15)
	if err != nil {
		t.Fatal(err)
	}
	metric := func(name string) string { return fanout.ShadowMetric(name, "fraud", "fraud.v2") }
	if a, d := vm.Stats().Value(metric("class_agree_rows_total")), vm.Stats().Value(metric("abs_diff_micros_total")); a != uint64(direct.Agree) || d != fanout.Micros(direct.SumAbsDiff) {
		t.Errorf("agree %d diff %d, want %d and %d", a, d, direct.Agree, fanout.Micros(direct.SumAbsDiff))
	}
}

// TestSequenceFeedsOutputsForward chains fraud v1 into a calibration model
// that reads its probability: the answer is the calibration model's own
// answer to fraud v1's own answer.
func TestSequenceFeedsOutputsForward(t *testing.T) {
	f := startFraud(t)
	dir := t.TempDir()
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "calib", Features: 1, Scale: 2, Biases: []float64{0.5}})
	calib := member{srv: inferencetest.Start(t, inferencetest.Options{Name: "calib", ModelDir: dir}), model: "calib"}
	f.add("calib", calib)
	in := features(5)
	step1 := directREST(t, f.members["fraud.v1"], []oip.Tensor{in})
	fed := step1.Outputs[0]
	fed.Name = "x"
	want := directREST(t, calib, []oip.Tensor{fed}).Outputs[0]
	for _, grpc := range []bool{false, true} {
		t.Run(map[bool]string{false: "rest", true: "grpc"}[grpc], func(t *testing.T) {
			ctx := testCtx(t)
			r := filterconfig.FanoutRoute{Route: "fraud", Sequence: true, TimeoutMs: 10000, Members: f.routeMembers(grpc, "fraud.v1", "calib")}
			r.Members[1].Inputs = map[string]string{"probability": "x"}
			vm := fanouttest.NewVM(t, f.clusters, r)
			var got oip.Tensor
			var answered string
			if grpc {
				resp, err := vm.RoundTrip(ctx, grpcCluster("calib"), grpcRequest(t, "fraud", in))
				if err != nil {
					t.Fatal(err)
				}
				if resp.Trailer("grpc-status") != "0" {
					t.Fatalf("grpc-status %q: %s", resp.Trailer("grpc-status"), resp.Trailer("grpc-message"))
				}
				got, answered = grpcOutput(t, decodeGRPCBody(t, resp.Body)), resp.Trailer(fanout.HeaderAnswered)
			} else {
				resp, err := vm.RoundTrip(ctx, "fraud.v1", restRequest(t, "fraud", in))
				if err != nil {
					t.Fatal(err)
				}
				out, err := oip.DecodeJSONResponse(resp.Body)
				if err != nil || resp.Status != 200 {
					t.Fatalf("status %d: %s (%v)", resp.Status, resp.Body, err)
				}
				got, answered = out.Outputs[0], resp.Header(fanout.HeaderAnswered)
			}
			sameTensor(t, got, want)
			if answered != "fraud.v1,calib" {
				t.Errorf("answered = %q", answered)
			}
		})
	}
	t.Run("broken step", func(t *testing.T) {
		ctx := testCtx(t)
		clusters := map[string]wasmtest.Cluster{}
		for k, v := range f.clusters {
			clusters[k] = v
		}
		clusters["fraud.v1"] = wasmtest.Cluster{Address: deadAddress(t)}
		r := filterconfig.FanoutRoute{Route: "fraud", Sequence: true, TimeoutMs: 10000, Members: f.routeMembers(false, "fraud.v1", "calib")}
		vm := fanouttest.NewVM(t, clusters, r)
		resp, err := vm.RoundTrip(ctx, "calib", restRequest(t, "fraud", in))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 503 || !bytes.Contains(resp.Body, []byte("missing: fraud.v1 (")) || !bytes.Contains(resp.Body, []byte("calib (not called)")) {
			t.Errorf("status %d body %s", resp.Status, resp.Body)
		}
	})
}

// answer takes a response's first output as a comparable answer.
func answer(t *testing.T, r *oip.Response) combine.Answer {
	t.Helper()
	o := r.Outputs[0]
	rows, width := o.RowsWidth()
	return combine.Answer{Rows: rows, Width: width, Scores: o.Values}
}
