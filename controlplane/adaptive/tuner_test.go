package adaptive

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/internal/fakes"
)

const policyText = `apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud}
spec:
  versions:
    - {name: a, endpoints: [{address: 127.0.0.1, port: 9001}]}
    - {name: b, endpoints: [{address: 127.0.0.1, port: 9002}]}
    - {name: c, endpoints: [{address: 127.0.0.1, port: 9003}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud}
spec:
  service: fraud
  match: {model: fraud}
  ensemble:
    strategy: weighted_mean
    weights: adaptive
    adaptive: {minWeight: 0.05, maxWeight: 1, interval: 10s, smoothing: %v}
    members: [{version: a}, {version: b}, {version: c}]
`

func meshOf(t testing.TB, smoothing float64) *policy.Mesh {
	t.Helper()
	m, err := policy.Parse("p.yaml", []byte(fmt.Sprintf(policyText, smoothing)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var members = []string{"fraud.a/fraud", "fraud.b/fraud", "fraud.c/fraud"}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// behaviour is how a synthetic member answers.
type behaviour int

const (
	healthy behaviour = iota
	wrong             // confidently wrong
	timeout           // never answers in time
)

// score is a member's probability of class 1 for a request whose true
// class is truth: a healthy member is right 90% of the time, confidently,
// and wrong with little confidence; a degraded one is confidently wrong.
func score(rng *rand.Rand, b behaviour, truth int) float64 {
	right := b == healthy && rng.Float64() < 0.9
	var dev float64 // distance from 0.5 towards the answer
	switch {
	case right:
		dev = 0.1 + 0.4*rng.Float64()
	case b == healthy:
		dev = -0.2 * rng.Float64()
	default:
		dev = -(0.3 + 0.2*rng.Float64())
	}
	if truth == 1 {
		return 0.5 + dev
	}
	return 0.5 - dev
}

func class(s float64) float64 {
	if s >= 0.5 {
		return 1
	}
	return 0
}

// stream runs one interval of n labelled requests through the tuner with
// the given member behaviours and weights, and returns the accuracy of the
// weighted-mean ensemble and the mean accuracy of the healthy members.
type stream struct {
	rng  *rand.Rand
	seq  int
	tune *Tuner
}

func (s *stream) interval(t *testing.T, n int, bs []behaviour, weights []float64, labels bool) (ensemble, healthyAcc float64) {
	t.Helper()
	var right, healthyRight, healthyN int
	for range n {
		truth := s.rng.IntN(2)
		var answers []Answer
		var sum, wsum float64
		for i, b := range bs {
			if b == timeout {
				answers = append(answers, Answer{Member: members[i], Outcome: TimedOut})
				continue
			}
			sc := score(s.rng, b, truth)
			answers = append(answers, Answer{Member: members[i], Value: class(sc)})
			sum += weights[i] * sc
			wsum += weights[i]
			if b == healthy {
				healthyN++
				if class(sc) == float64(truth) {
					healthyRight++
				}
			}
		}
		combined := class(sum / wsum)
		if combined == float64(truth) {
			right++
		}
		s.seq++
		id := fmt.Sprintf("req-%d", s.seq)
		s.tune.Observe("fraud", id, answers, combined)
		if labels {
			if err := s.tune.Label(id, float64(truth)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return float64(right) / float64(n), float64(healthyRight) / float64(healthyN)
}

func weightsOf(t *testing.T, tu *Tuner) []float64 {
	t.Helper()
	ws := tu.Overlay()["fraud"]
	if len(ws) != 3 {
		t.Fatalf("overlay %v", tu.Overlay())
	}
	return ws
}

// TestDegradedMemberLosesWeight degrades member c (wrong answers with
// labels, wrong answers without labels, timeouts) and checks its weight
// reaches the lower bound within three intervals, the ensemble's accuracy
// comes back to within a point of the healthy members', and the weight
// returns when c recovers.
func TestDegradedMemberLosesWeight(t *testing.T) {
	for _, c := range []struct {
		name   string
		bad    behaviour
		labels bool
		basis  string
	}{
		{name: "wrong answers, labelled", bad: wrong, labels: true, basis: "accuracy"},
		{name: "wrong answers, agreement only", bad: wrong, labels: false, basis: "agreement"},
		{name: "timeouts", bad: timeout, labels: true, basis: "answered share"},
	} {
		t.Run(c.name, func(t *testing.T) {
			clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			rec := &fakes.Audit{}
			tu := New(Config{Now: clk.now, Audit: rec})
			m := meshOf(t, 0.5)
			ctx := context.Background()
			if err := tu.Evaluate(ctx, m); err != nil {
				t.Fatal(err)
			}
			s := &stream{rng: rand.New(rand.NewPCG(1, 2)), tune: tu}
			step := func(bs []behaviour) (float64, float64) {
				ens, healthy := s.interval(t, 400, bs, weightsOf(t, tu), c.labels)
				clk.t = clk.t.Add(10 * time.Second)
				if err := tu.Evaluate(ctx, m); err != nil {
					t.Fatal(err)
				}
				return ens, healthy
			}
			all := []behaviour{healthy, healthy, healthy}
			for range 3 {
				step(all)
			}
			for i, w := range weightsOf(t, tu) {
				if w < 0.8 {
					t.Fatalf("healthy member %d has weight %v", i, w)
				}
			}
			degraded := []behaviour{healthy, healthy, c.bad}
			firstEns, _ := step(degraded)
			reached := 0
			for i := 1; i <= 3; i++ {
				if weightsOf(t, tu)[2] == 0.05 {
					reached = i
					break
				}
				step(degraded)
			}
			if reached == 0 {
				t.Fatalf("weight of the degraded member is %v after three intervals, want the bound 0.05", weightsOf(t, tu)[2])
			}
			ens, healthy := step(degraded)
			if c.bad == wrong && firstEns > healthy-0.05 {
				// Otherwise the recovery below would prove nothing.
				t.Fatalf("at full weight the degraded member costs the ensemble too little: %.3f against %.3f", firstEns, healthy)
			}
			if ens < healthy-0.01 {
				t.Errorf("ensemble accuracy %.3f with the member at the bound, healthy members %.3f: more than a point below", ens, healthy)
			}
			t.Logf("degraded: reached the bound after %d intervals; ensemble accuracy %.3f on the first degraded interval, %.3f at the bound, healthy members %.3f",
				reached, firstEns, ens, healthy)
			for _, w := range weightsOf(t, tu) {
				if w < 0.05 || w > 1 {
					t.Fatalf("weight %v outside the bounds", w)
				}
			}
			var ev *audit.Event
			for i := range rec.Events() {
				if e := &rec.Events()[i]; e.Details["member"] == members[2] && e.Details["weight_after"] == "0.05" {
					ev = e
					break
				}
			}
			if ev == nil || ev.Kind != EventWeight || ev.Details["basis"] != c.basis || ev.Reason == "" || ev.Details["requests"] != "400" {
				t.Fatalf("no audit event of the fall to the bound with basis %s: %+v", c.basis, ev)
			}
			for i := 1; i <= 6; i++ {
				step(all)
				if weightsOf(t, tu)[2] >= 0.9 {
					t.Logf("recovered after %d intervals", i)
					return
				}
			}
			t.Fatalf("weight %v six intervals after recovery, want >= 0.9", weightsOf(t, tu)[2])
		})
	}
}

// TestSmoothing checks the moving average and the mapping onto the bounds
// with exact numbers: member c is right on a fixed share of labelled
// requests each interval.
func TestSmoothing(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tu := New(Config{Now: clk.now})
	m := meshOf(t, 0.25)
	ctx := context.Background()
	_ = tu.Evaluate(ctx, m)
	seq := 0
	interval := func(cRight int) {
		for i := range 100 {
			seq++
			id := fmt.Sprint(seq)
			cv := 1.0
			if i >= cRight {
				cv = 0
			}
			tu.Observe("fraud", id, []Answer{{Member: members[0], Value: 1}, {Member: members[1], Value: 1}, {Member: members[2], Value: cv}}, 1)
			if err := tu.Label(id, 1); err != nil {
				t.Fatal(err)
			}
		}
		clk.t = clk.t.Add(10 * time.Second)
		_ = tu.Evaluate(ctx, m)
	}
	q := math.NaN()
	for _, right := range []int{100, 0, 0, 100} {
		interval(right)
		measured := float64(right) / 100
		if math.IsNaN(q) {
			q = measured
		} else {
			q = 0.25*measured + 0.75*q
		}
		wantW := 0.05 + 0.95*math.Max(0, (q-0.5)/(1-0.5))
		st := tu.View().Routes["fraud"][2]
		if math.Abs(st.Quality-q) > 1e-12 || math.Abs(st.Weight-wantW) > 1e-12 {
			t.Fatalf("after accuracy %v: quality %v weight %v, want %v and %v", measured, st.Quality, st.Weight, q, wantW)
		}
	}
}

func TestEditResetsAndOverlayApplies(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tu := New(Config{Now: clk.now})
	ctx := context.Background()
	m := meshOf(t, 0.5)
	_ = tu.Evaluate(ctx, m)
	for i := range 20 {
		id := fmt.Sprint(i)
		tu.Observe("fraud", id, []Answer{{Member: members[0], Value: 1}, {Member: members[1], Value: 1}, {Member: members[2], Value: 0}}, 1)
		_ = tu.Label(id, 1)
	}
	clk.t = clk.t.Add(10 * time.Second)
	_ = tu.Evaluate(ctx, m)
	if w := weightsOf(t, tu); w[2] != 0.05 {
		t.Fatalf("weights %v", w)
	}
	applied := tu.Overlay().Apply(m)
	if got := applied.Route("fraud").Spec.Ensemble.Members[2].Weight; got != 0.05 {
		t.Errorf("applied weight %v", got)
	}
	if got := m.Route("fraud").Spec.Ensemble.Members[2].Weight; got != 1 {
		t.Errorf("the policy's weight changed to %v", got)
	}
	edited := meshOf(t, 0.6)
	_ = tu.Evaluate(ctx, edited)
	if w := weightsOf(t, tu); w[2] != 1 {
		t.Errorf("after an edit the weights are %v, want the policy's", w)
	}
	if err := tu.Evaluate(ctx, nil); err == nil || len(tu.Overlay()) != 1 {
		t.Errorf("evaluate without a policy: %v, overlay %v", err, tu.Overlay())
	}
	if (Overlay{}).Apply(m) != m {
		t.Error("an empty overlay copied the mesh")
	}
}

func TestStoreBounds(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tu := New(Config{Now: clk.now, Store: StoreConfig{TTL: time.Minute, MaxEntries: 100}})
	_ = tu.Evaluate(context.Background(), meshOf(t, 0.5))
	ans := []Answer{{Member: members[0], Value: 1}}
	for i := range 150 {
		tu.Observe("fraud", fmt.Sprint(i), ans, 1)
	}
	if n := tu.store.len(); n != 100 {
		t.Fatalf("store holds %d, want MaxEntries 100", n)
	}
	if err := tu.Label("0", 1); !errors.Is(err, ErrUnknownRequest) {
		t.Errorf("label of an evicted request: %v", err)
	}
	if err := tu.Label("149", 1); err != nil {
		t.Errorf("label of a recent request: %v", err)
	}
	if err := tu.Label("149", 1); !errors.Is(err, ErrUnknownRequest) {
		t.Errorf("second label of a request: %v", err)
	}
	clk.t = clk.t.Add(time.Minute)
	if err := tu.Label("148", 1); !errors.Is(err, ErrUnknownRequest) || !strings.Contains(err.Error(), `"148"`) {
		t.Errorf("label after the TTL: %v", err)
	}
	if n := tu.store.len(); n != 0 {
		t.Errorf("store holds %d after the TTL", n)
	}
	// Heavy labelled traffic keeps the FIFO bounded too.
	for i := range 10_000 {
		id := fmt.Sprint("x", i)
		tu.Observe("fraud", id, ans, 1)
		_ = tu.Label(id, 1)
	}
	if n := len(tu.store.fifo) - tu.store.head; n > 2*100+1100 {
		t.Errorf("FIFO holds %d slots for at most 100 entries", n)
	}
	tu.Observe("fraud", "nan", ans, math.NaN())
	if err := tu.Label("nan", math.NaN()); err == nil || errors.Is(err, ErrUnknownRequest) {
		t.Errorf("NaN label: %v", err)
	}
	if err := tu.Label("nan", 1); err != nil {
		t.Errorf("label after a refused NaN: %v", err)
	}
	tu.Observe("other", "y", ans, 1) // a route not tracked: nothing kept
	if err := tu.Label("y", 1); !errors.Is(err, ErrUnknownRequest) {
		t.Errorf("label for an untracked route: %v", err)
	}
}
