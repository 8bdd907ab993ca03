package fanout_test

import (
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/maestro-ml/maestro/wasmfilter/fanout"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/combine"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/fanouttest"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// observationBody is the control plane's POST /v1/observations body
// (closedloop.Observation), decoded strictly so that a field the control
// plane would refuse fails here too.
type observationBody struct {
	Route     string   `json:"route"`
	RequestID string   `json:"requestId"`
	Ensemble  *float64 `json:"ensemble"`
	Answers   []struct {
		Member  string   `json:"member"`
		Outcome string   `json:"outcome"`
		Value   *float64 `json:"value"`
	} `json:"answers"`
}

// observer is an observation endpoint answering status to every post.
type observer struct {
	addr   string
	mu     sync.Mutex
	got    []observationBody
	status int
}

func startObserver(t testing.TB, status int) *observer {
	t.Helper()
	o := &observer{status: status}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.addr = lis.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ob observationBody
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if r.Method != "POST" || r.URL.Path != filterconfig.DefaultObservePath || dec.Decode(&ob) != nil {
			t.Errorf("observer got %s %s, undecodable", r.Method, r.URL.Path)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		o.got = append(o.got, ob)
		o.mu.Unlock()
		w.WriteHeader(o.status)
	})}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return o
}

func (o *observer) observations() []observationBody {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]observationBody(nil), o.got...)
}

// observedRoute is the fraud ensemble posting observations to cluster
// "observer".
func observedRoute(f *fixture, grpc bool, percent float64) filterconfig.FanoutRoute {
	r := filterconfig.FanoutRoute{Route: "fraud-gw", Members: f.routeMembers(grpc, fraudMembers...),
		Strategy: filterconfig.StrategyWeightedMean, TimeoutMs: 10000, Threshold: 0.15,
		Observe: &filterconfig.Observe{Cluster: "observer", Route: "fraud", Percent: percent,
			Members: []string{"fraud.v1/fraud", "fraud.v2/fraud", "fraud-logistic.v1/fraud-logistic"}}}
	for i := range r.Members {
		r.Members[i].Weight = float64(i + 1)
	}
	if grpc {
		r.Primary = grpcCluster("fraud.v1")
	}
	return r
}

// firstClass is the class of an answer's first row, as the filter takes it.
func firstClass(t *testing.T, a combine.Answer, threshold float64) float64 {
	t.Helper()
	return float64(combine.Class(a.Scores[:a.Width], threshold))
}

// TestObservationPostedAfterTheAnswer: the filter posts each member's class
// and the ensemble's for the request id without holding the client's
// answer (the observer's answer is held until the client has its own), and
// the values are those the members and the combination give directly.
func TestObservationPostedAfterTheAnswer(t *testing.T) {
	f := startFraud(t)
	in := features(4)
	obs := startObserver(t, http.StatusNoContent)
	for _, grpc := range []bool{false, true} {
		t.Run(map[bool]string{false: "rest", true: "grpc"}[grpc], func(t *testing.T) {
			ctx := testCtx(t)
			r := observedRoute(f, grpc, 100)
			clusters := map[string]wasmtest.Cluster{}
			for k, v := range f.clusters {
				clusters[k] = v
			}
			held, release := heldProxy(t, obs.addr)
			clusters["observer"] = wasmtest.Cluster{Address: held}
			vm := fanouttest.NewVM(t, clusters, r)
			before := len(obs.observations())
			var resp *wasmtest.Response
			var err error
			if grpc {
				resp, err = vm.RoundTrip(ctx, r.Primary, grpcRequest(t, "fraud", in))
			} else {
				resp, err = vm.RoundTrip(ctx, "fraud.v1", restRequest(t, "fraud", in))
			}
			if err != nil {
				t.Fatal(err)
			}
			if grpc && resp.Trailer("grpc-status") != "0" || !grpc && resp.Status != 200 {
				t.Fatalf("status %d grpc-status %q: %s", resp.Status, resp.Trailer("grpc-status"), resp.Body)
			}
			// The client has its answer while the observer's answer is
			// still held: the response did not wait for the observation.
			release()
			if err := vm.AwaitCallouts(ctx); err != nil {
				t.Fatal(err)
			}
			got := obs.observations()[before:]
			if len(got) != 1 {
				t.Fatalf("%d observations, want 1", len(got))
			}
			ob := got[0]
			direct := make([]*oip.Response, len(fraudMembers))
			for i, n := range fraudMembers {
				direct[i] = directREST(t, f.members[n], []oip.Tensor{in})
			}
			ens := expected(t, &r, direct)
			rows, width := ens.RowsWidth()
			wantEns := firstClass(t, combine.Answer{Rows: rows, Width: width, Scores: ens.Values}, r.Threshold)
			if ob.Route != "fraud" || ob.RequestID != "req-1" || ob.Ensemble == nil || *ob.Ensemble != wantEns || len(ob.Answers) != 3 {
				t.Fatalf("observation %+v, want route fraud, id req-1, ensemble %v, 3 answers", ob, wantEns)
			}
			for i, a := range ob.Answers {
				da, _, err := fanout.AnswerOf(&r, i, direct[i])
				if err != nil {
					t.Fatal(err)
				}
				want := firstClass(t, da, r.Threshold)
				if a.Member != r.Observe.Members[i] || a.Outcome != "answered" || a.Value == nil || *a.Value != want {
					t.Errorf("answer %d = %+v, want %s answered %v", i, a, r.Observe.Members[i], want)
				}
			}
			if n := vm.Stats().Value(fanout.RouteMetric("observations_total", "fraud-gw")); n != 1 {
				t.Errorf("observations_total = %d, want 1", n)
			}
			if m, ok := vm.Stats().Get(fanout.RouteMetric("observe_failures_total", "fraud-gw")); !ok || m.Value != 0 {
				t.Errorf("observe_failures_total = %+v (defined %v), want 0 and defined", m, ok)
			}
		})
	}
}

// TestObservationSamplingFailuresAndIDs: the sampled share is exact; a
// member that times out is reported so and the ensemble still observed;
// the x-request-id header stands in for a missing OIP id; an observer that
// is down or refuses is counted as a failure and never reaches the client.
func TestObservationSamplingFailuresAndIDs(t *testing.T) {
	f := startFraud(t)
	in := features(2)
	up := startObserver(t, http.StatusNoContent)
	refusing := startObserver(t, http.StatusBadRequest)
	slowAddr, _ := heldProxy(t, f.members["fraud-logistic.v1"].srv.HTTPAddr)
	tests := map[string]struct {
		observer     string
		percent      float64
		slow         bool
		requests     int
		noID         bool
		wantPosted   uint64
		wantFailures uint64
	}{
		"quarter":   {observer: up.addr, percent: 25, requests: 8, wantPosted: 2},
		"timeout":   {observer: up.addr, percent: 100, slow: true, requests: 1, wantPosted: 1},
		"header id": {observer: up.addr, percent: 100, noID: true, requests: 1, wantPosted: 1},
		"down":      {observer: deadAddress(t), percent: 100, requests: 2, wantPosted: 2, wantFailures: 2},
		"refused":   {observer: refusing.addr, percent: 100, requests: 1, wantPosted: 1, wantFailures: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			r := observedRoute(f, false, tc.percent)
			clusters := map[string]wasmtest.Cluster{"observer": {Address: tc.observer}}
			for k, v := range f.clusters {
				clusters[k] = v
			}
			if tc.slow {
				r.Quorum, r.TimeoutMs = 2, 300
				clusters["fraud-logistic.v1"] = wasmtest.Cluster{Address: slowAddr}
			}
			vm := fanouttest.NewVM(t, clusters, r)
			before := len(up.observations())
			for range tc.requests {
				req := restRequest(t, "fraud", in)
				if tc.noID {
					body, err := oip.EncodeJSONRequest("", []oip.Tensor{in})
					if err != nil {
						t.Fatal(err)
					}
					req.Body = body
					req.Headers = append(req.Headers, [2]string{"x-request-id", "hdr-7"})
				}
				resp, err := vm.RoundTrip(ctx, "fraud.v1", req)
				if err != nil {
					t.Fatal(err)
				}
				okJSON(t, resp)
			}
			if err := vm.AwaitCallouts(ctx); err != nil {
				t.Fatal(err)
			}
			if n := vm.Stats().Value(fanout.RouteMetric("observations_total", "fraud-gw")); n != tc.wantPosted {
				t.Errorf("observations_total = %d, want %d", n, tc.wantPosted)
			}
			if n := vm.Stats().Value(fanout.RouteMetric("observe_failures_total", "fraud-gw")); n != tc.wantFailures {
				t.Errorf("observe_failures_total = %d, want %d", n, tc.wantFailures)
			}
			if tc.observer != up.addr {
				return
			}
			got := up.observations()[before:]
			if uint64(len(got)) != tc.wantPosted {
				t.Fatalf("observer got %d, want %d", len(got), tc.wantPosted)
			}
			ob := got[0]
			switch {
			case tc.slow:
				if a := ob.Answers[2]; a.Outcome != "timeout" || a.Value != nil || ob.Ensemble == nil {
					t.Errorf("slow member %+v, ensemble %v: want a timeout and an ensemble answer", a, ob.Ensemble)
				}
			case tc.noID:
				if ob.RequestID != "hdr-7" {
					t.Errorf("request id %q, want the x-request-id header's", ob.RequestID)
				}
			}
		})
	}
}

// TestObservationBodyEscapes: a client's request id is the body's only
// free text; it stays valid JSON whatever it holds.
func TestObservationBodyEscapes(t *testing.T) {
	id := "q\"\\\n<é>\x01"
	b := oip.AppendJSONString(nil, id)
	var got string
	if err := json.Unmarshal(b, &got); err != nil || got != id {
		t.Fatalf("%s decodes to %q (%v), want %q", b, got, err, id)
	}
}
