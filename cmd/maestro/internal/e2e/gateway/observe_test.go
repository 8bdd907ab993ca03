package gateway_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/controlplane/adaptive"
	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/internal/e2etest"
	"github.com/maestro-ml/maestro/wasmfilter/fanout"
)

// judged is a classifier whose class is the sign of its input row's sum
// (1 when positive), which it gives with probability 0.6 for class 1 and
// 0.4 for class 0: unsure, so that one member sure of the opposite drags
// an evenly weighted mean across the 0.5 boundary. While wrong is set it
// answers the other class with certainty.
type judged struct {
	runtime.Model
	wrong *atomic.Bool
}

func (m judged) Predict(ctx context.Context, in []runtime.Tensor) ([]runtime.Tensor, error) {
	out, err := m.Model.Predict(ctx, in)
	if err != nil {
		return nil, err
	}
	x, _ := in[0].Data.([]float32)
	y, _ := out[0].Data.([]float32)
	if len(y) == 0 || len(x)%len(y) != 0 {
		return nil, fmt.Errorf("judged: %d input values for %d rows: %w", len(x), len(y), runtime.ErrInvalidInput)
	}
	features := len(x) / len(y)
	wrong := m.wrong.Load()
	for r := range y {
		sum := float32(0)
		for _, v := range x[r*features : (r+1)*features] {
			sum += v
		}
		switch positive := sum > 0; {
		case wrong && positive:
			y[r] = 0
		case wrong:
			y[r] = 1
		case positive:
			y[r] = 0.6
		default:
			y[r] = 0.4
		}
	}
	return out, nil
}

// judgedRegistry serves the test runtime's models as judged ones.
func judgedRegistry(wrong *atomic.Bool) runtime.Registry {
	reg := inferencetest.Registry()
	load := reg[inferencetest.RuntimeName]
	reg[inferencetest.RuntimeName] = func(ctx context.Context, spec runtime.Spec) (runtime.Model, error) {
		m, err := load(ctx, spec)
		return judged{Model: m, wrong: wrong}, err
	}
	return reg
}

// outcome is one labelled request of the stream: when it was sent, the
// application's true class, the class the ensemble answered and each
// answering member's own class (from the fanout_member_scores parameter).
type outcome struct {
	sent     time.Time
	truth    int
	ensemble int
	members  map[string]int
}

// labelledStream calls the ensemble through the gateway with request ids
// it then labels on the control plane (POST /v1/feedback), as an
// application with ground truth does, until stopped.
type labelledStream struct {
	mu       sync.Mutex
	outcomes []outcome
	failures []string
	// unlabelled counts labels the control plane never took (404 after
	// every retry).
	unlabelled int
	stop       func()
}

// startLabelled runs the stream. Request i has an input whose sign
// alternates; its true class is that sign's, except on one request in ten
// where the application says otherwise (the healthy members are then
// wrong: their accuracy is 0.9).
func startLabelled(t *testing.T, c pb.GRPCInferenceServiceClient, admin string) *labelledStream {
	t.Helper()
	ls := &labelledStream{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		mctx := metadata.AppendToOutgoingContext(ctx, "x-maestro-model", "fraud-ensemble")
		for i := 0; ctx.Err() == nil; i++ {
			o, err := ls.one(mctx, c, admin, i)
			ls.mu.Lock()
			switch {
			case err == nil:
				ls.outcomes = append(ls.outcomes, o)
			case errors.Is(err, errUnlabelled):
				ls.unlabelled++
			case ctx.Err() == nil:
				ls.failures = append(ls.failures, err.Error())
			}
			ls.mu.Unlock()
		}
	}()
	ls.stop = sync.OnceFunc(func() {
		cancel()
		<-done
	})
	t.Cleanup(ls.stop)
	return ls
}

// requestLimit bounds one request of the labelled stream: far above the
// route's 2s timeout.
const requestLimit = 10 * time.Second

// errUnlabelled is a label the control plane refused after every retry.
var errUnlabelled = errors.New("label never accepted")

// one sends request i and labels it.
func (ls *labelledStream) one(ctx context.Context, c pb.GRPCInferenceServiceClient, admin string, i int) (outcome, error) {
	sign := float32(1)
	if i%2 == 1 {
		sign = -1
	}
	o := outcome{sent: time.Now(), truth: int((sign + 1) / 2), members: map[string]int{}}
	if i%10 == 9 {
		o.truth = 1 - o.truth
	}
	id := "lab-" + strconv.Itoa(i)
	req := &pb.ModelInferRequest{ModelName: "fraud-ensemble", Id: id, Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{1, 4},
		Contents: &pb.InferTensorContents{Fp32Contents: []float32{sign, 2 * sign, 3 * sign, 4 * sign}}}}}
	// A request that hangs is a failure, not the end of the stream.
	rctx, cancel := context.WithTimeout(ctx, requestLimit)
	defer cancel()
	resp, err := c.ModelInfer(rctx, req)
	if err != nil {
		return o, fmt.Errorf("request %s: %w", id, err)
	}
	p, err := firstScore(resp)
	if err != nil {
		return o, fmt.Errorf("request %s: %w", id, err)
	}
	o.ensemble = class(p)
	for _, part := range strings.Split(resp.Parameters[fanout.ParamMembers].GetStringParam(), ";") {
		label, scores, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		first, _, _ := strings.Cut(scores, " ")
		v, err := strconv.ParseFloat(first, 64)
		if err != nil {
			return o, fmt.Errorf("request %s: member scores %q: %w", id, part, err)
		}
		o.members[label] = class(v)
	}
	return o, label(ctx, admin, id, o.truth)
}

// label posts the true class of request id, retrying while the control
// plane does not hold the request yet: the gateway posts the members'
// answers after answering, so the label may overtake them.
func label(ctx context.Context, admin, id string, truth int) error {
	body := fmt.Sprintf(`{"requestId": %q, "value": %d}`, id, truth)
	for try := 0; try < 100 && ctx.Err() == nil; try++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+admin+"/v1/feedback", strings.NewReader(body))
		if err != nil {
			return err
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("label %s: %w", id, err)
		}
		res.Body.Close()
		switch res.StatusCode {
		case http.StatusNoContent:
			return nil
		case http.StatusNotFound:
			time.Sleep(10 * time.Millisecond) // the observation is on its way; bounded by the tries
		default:
			return fmt.Errorf("label %s: status %d", id, res.StatusCode)
		}
	}
	return fmt.Errorf("label %s: %w", id, errUnlabelled)
}

func class(p float64) int {
	if p >= 0.5 {
		return 1
	}
	return 0
}

// firstScore is the first value of the response's only output.
func firstScore(resp *pb.ModelInferResponse) (float64, error) {
	if len(resp.Outputs) != 1 {
		return 0, fmt.Errorf("%d outputs, want 1", len(resp.Outputs))
	}
	if v := resp.Outputs[0].GetContents().GetFp32Contents(); len(v) > 0 {
		return float64(v[0]), nil
	}
	if len(resp.RawOutputContents) == 1 && len(resp.RawOutputContents[0]) >= 4 {
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(resp.RawOutputContents[0]))), nil
	}
	return 0, fmt.Errorf("output %s holds no FP32 values", resp.Outputs[0].Name)
}

// since returns the outcomes of requests sent at or after from.
func (ls *labelledStream) since(from time.Time) []outcome {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var out []outcome
	for _, o := range ls.outcomes {
		if !o.sent.Before(from) {
			out = append(out, o)
		}
	}
	return out
}

// waitSince waits, bounded, until n requests sent at or after from are
// labelled, and returns them.
func (ls *labelledStream) waitSince(t *testing.T, from time.Time, n int) []outcome {
	t.Helper()
	deadline := time.Now().Add(loopLimit)
	for {
		got := ls.since(from)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			ls.mu.Lock()
			defer ls.mu.Unlock()
			t.Fatalf("%d labelled requests since %v in %v (want %d); %d unlabelled; failures %v",
				len(got), from.Format(time.TimeOnly), loopLimit, n, ls.unlabelled, ls.failures)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a bounded wait
	}
}

// accuracy is the share of os the ensemble, or member, got right; members
// count only where they answered.
func accuracy(os []outcome, member string) float64 {
	right, n := 0, 0
	for _, o := range os {
		got := o.ensemble
		if member != "" {
			c, ok := o.members[member]
			if !ok {
				continue
			}
			got = c
		}
		n++
		if got == o.truth {
			right++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return float64(right) / float64(n)
}

// waitQuality polls /debug/status until member's smoothed quality
// satisfies ok.
func (p *loopCP) waitQuality(t *testing.T, member string, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(loopLimit)
	for {
		for _, r := range p.status(t).Routes {
			for _, m := range r.Members {
				if m.Member == member && m.Quality != nil && ok(*m.Quality) {
					return *m.Quality
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's quality never as wanted within %v: %+v", member, loopLimit, p.status(t).Routes)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a bounded wait
	}
}

// auditEvents reads the audit log at path.
func auditEvents(t *testing.T, path string) []audit.Event {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Event
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var ev audit.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, ev)
	}
	return out
}

// weightEvents returns the audit log's ensemble weight changes of member.
func weightEvents(t *testing.T, path, member string) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, ev := range auditEvents(t, path) {
		if ev.Kind == adaptive.EventWeight && ev.Details["member"] == member {
			out = append(out, ev)
		}
	}
	return out
}

func detail(t *testing.T, ev audit.Event, key string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(ev.Details[key], 64)
	if err != nil {
		t.Fatalf("audit event %+v: %s: %v", ev, key, err)
	}
	return v
}

// TestAdaptiveWeightsFromLabelsThroughGateway runs an adaptive ensemble of
// three real inference servers behind the gateway, whose fanout filter
// posts every request's member answers to the control plane; the client
// labels each request by its id. When one member starts answering wrongly,
// its weight falls to the bound within three intervals on accuracy alone,
// the ensemble's accuracy on the labelled stream comes back to the healthy
// members', and the weight returns when the member recovers; the audit
// trail shows the bounds, the smoothing and the labels behind each change.
func TestAdaptiveWeightsFromLabelsThroughGateway(t *testing.T) {
	wasm := e2etest.WasmDir(t)
	repo := e2etest.ModelRepo(t)
	var never, wrong atomic.Bool
	v1 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1", ModelDir: repo, Registry: judgedRegistry(&never)})
	v2 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v2", ModelDir: repo, Registry: judgedRegistry(&wrong)})
	v3 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v3", ModelDir: repo, Registry: judgedRegistry(&never)})

	dir := t.TempDir()
	path, auditPath := filepath.Join(dir, "mesh.yaml"), filepath.Join(dir, "audit.jsonl")
	const smoothing = 0.6
	e2etest.ReplaceFile(t, path, adaptivePolicySmoothed(wasm, smoothing, v1.GRPCAddr, v2.GRPCAddr, v3.GRPCAddr))
	// No metric source: the weights move on the observations and labels
	// alone, not on the filter's counters.
	cp := startLoopCP(t, path, dir, auditPath, nil)
	gw := e2etest.StartGateway(t, "gw-1", cp.xds, nil)
	conn, err := grpc.NewClient(gw.WaitLive(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if w, _ := waitWeight(t, gw, "fraud.v2", func(v float64) bool { return v == 1 }); w["fraud.v1"] != 1 || w["fraud.v3"] != 1 {
		t.Fatalf("starting weights %v, want the policy's 1 each", w)
	}
	ls := startLabelled(t, pb.NewGRPCInferenceServiceClient(conn), cp.admin)

	// Healthy: the members are scored on the labels (0.9 by construction,
	// where agreement with the ensemble would give 1).
	q := cp.waitQuality(t, "fraud.v2/fraud", func(q float64) bool { return q > 0.8 && q < 0.95 })
	t.Logf("healthy: fraud.v2's quality on labels %.3f", q)

	wrong.Store(true)
	degraded := time.Now()
	low, at := waitWeight(t, gw, "fraud.v2", func(v float64) bool { return v <= 0.05 })
	fell := at.Sub(degraded)
	before := ls.since(degraded)
	t.Logf("fraud.v2 wrong: its weight reached %v in the gateway's filter %v later (interval %v); weights %v; "+
		"ensemble accuracy meanwhile %.3f over %d labelled requests", low["fraud.v2"], fell, adaptiveInterval, low,
		accuracy(before, ""), len(before))
	if fell > 3*adaptiveInterval {
		t.Errorf("the wrong member's weight took %v to reach the bound, want within three intervals (%v)", fell, 3*adaptiveInterval)
	}
	if low["fraud.v2"] != 0.05 || low["fraud.v1"] != 1 || low["fraud.v3"] != 1 {
		t.Errorf("weights %v, want fraud.v2 at the 0.05 bound and the others at the 1 bound", low)
	}

	after := ls.waitSince(t, at, 200)
	ens, h1, h3, bad := accuracy(after, ""), accuracy(after, "fraud.v1"), accuracy(after, "fraud.v3"), accuracy(after, "fraud.v2")
	t.Logf("with fraud.v2 at the bound: ensemble accuracy %.3f, healthy members %.3f and %.3f, fraud.v2 %.3f, over %d labelled requests",
		ens, h1, h3, bad, len(after))
	if healthy := min(h1, h3); ens < healthy-0.01 {
		t.Errorf("ensemble accuracy %.3f, want within one point of the healthy members' %.3f", ens, healthy)
	}
	if bad > 0.2 {
		t.Errorf("fraud.v2's accuracy %.3f while wrong: the stream does not exercise a wrong member", bad)
	}

	wrong.Store(false)
	recovered := time.Now()
	back, at := waitWeight(t, gw, "fraud.v2", func(v float64) bool { return v >= 0.9 })
	t.Logf("fraud.v2 right again: its weight came back to %v %v later (%.1f intervals); weights %v",
		back["fraud.v2"], at.Sub(recovered), float64(at.Sub(recovered))/float64(adaptiveInterval), back)
	ls.stop()

	ls.mu.Lock()
	failures, unlabelled, total := ls.failures, ls.unlabelled, len(ls.outcomes)
	ls.mu.Unlock()
	t.Logf("through the gateway: %d labelled requests, %d unlabelled, %d failed", total, unlabelled, len(failures))
	if len(failures) > 0 {
		t.Errorf("%d requests or labels failed, want none; first: %s", len(failures), failures[0])
	}
	if n := gw.Metric(t, `maestro_fanout_observations_total{route="fraud-ensemble"}`); n < float64(total) {
		t.Errorf("the gateway posted %v observations for %d labelled requests", n, total)
	}
	if n := gw.Metric(t, `maestro_fanout_observe_failures_total{route="fraud-ensemble"}`); n != 0 {
		t.Errorf("%v observations failed, want none", n)
	}
	checkWeightAudit(t, auditPath, smoothing)
}

// checkWeightAudit checks fraud.v2's weight changes: within the bounds,
// the fall decided on labels, and the smoothed quality the stated share of
// the newest measurement.
func checkWeightAudit(t *testing.T, path string, smoothing float64) {
	t.Helper()
	evs := weightEvents(t, path, "fraud.v2/fraud")
	if len(evs) < 2 {
		t.Fatalf("%d weight changes of fraud.v2 audited, want its fall and its return", len(evs))
	}
	var fall *audit.Event
	chained := 0
	for i, ev := range evs {
		w := detail(t, ev, "weight_after")
		if w < 0.05 || w > 1 || ev.Details["min_weight"] != "0.05" || ev.Details["max_weight"] != "1" ||
			detail(t, ev, "smoothing") != smoothing {
			t.Errorf("event %+v: weight or settings outside the policy's bounds and smoothing", ev)
		}
		s, m := detail(t, ev, "quality_smoothed"), detail(t, ev, "quality_measured")
		// smoothed = smoothing*measured + (1-smoothing)*previous, so the
		// previous smoothed quality is implied; where the previous event
		// is the previous evaluation, it must be that event's.
		prev := (s - smoothing*m) / (1 - smoothing)
		if i > 0 && ev.Time.Sub(evs[i-1].Time) < adaptiveInterval*3/2 {
			if got := detail(t, evs[i-1], "quality_smoothed"); math.Abs(prev-got) > 0.001 {
				t.Errorf("event %d: smoothed %v from measured %v implies a previous quality of %.4f; the previous evaluation's was %v",
					i, s, m, prev, got)
			}
			chained++
		}
		if fall == nil && w == 0.05 {
			fall = &evs[i]
			if ev.Details["basis"] != "accuracy" || detail(t, ev, "labelled") < 10 {
				t.Errorf("the fall to the bound rests on %s with %s labels, want accuracy on at least 10: %+v",
					ev.Details["basis"], ev.Details["labelled"], ev)
			}
		}
	}
	if fall == nil {
		t.Fatalf("no audited change of fraud.v2 to the 0.05 bound: %+v", evs)
	}
	first := evs[0]
	implied := (detail(t, first, "quality_smoothed") - smoothing*detail(t, first, "quality_measured")) / (1 - smoothing)
	if implied < 0.8 || implied > 1 {
		t.Errorf("the first change's smoothed quality implies a previous quality of %.3f, want the healthy ~0.9: %+v", implied, first)
	}
	if chained == 0 {
		t.Errorf("no two weight changes of consecutive evaluations to check the smoothing on: %+v", evs)
	}
	t.Logf("audit: %d weight changes of fraud.v2 (%d chained), the fall: %s", len(evs), chained, fall.Reason)
	var b bytes.Buffer
	for _, ev := range evs {
		fmt.Fprintf(&b, " %s->%s(%s)", ev.Details["weight_before"], ev.Details["weight_after"], ev.Details["basis"])
	}
	t.Logf("fraud.v2 weights:%s", b.String())
}
