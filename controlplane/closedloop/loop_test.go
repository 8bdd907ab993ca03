package closedloop

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/internal/fakes"
)

const services = `apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud}
spec:
  versions:
    - {name: a, endpoints: [{address: 127.0.0.1, port: 9001}]}
    - {name: b, endpoints: [{address: 127.0.0.1, port: 9002}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud}
spec:
  service: fraud
  match: {model: fraud}
`

const (
	rolloutSpec  = "  split: [{version: a, weight: 100}]\n  rollout: {version: b, stepInterval: %s}\n"
	adaptiveSpec = `  ensemble:
    strategy: weighted_mean
    weights: adaptive
    adaptive: {minWeight: 0.1, maxWeight: 1, interval: %s, smoothing: 1}
    members: [{version: a}, {version: b}]
`
)

func parse(t *testing.T, spec string) *policy.Mesh {
	t.Helper()
	m, err := policy.Parse("p.yaml", []byte(services+spec))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPeriodFollowsThePolicy(t *testing.T) {
	driven, err := New(Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	undriven, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		loop *Loop
		spec string
		want time.Duration
	}{
		"no policy":                {driven, "", 0},
		"static route":             {driven, "  split: [{version: a, weight: 100}]\n", 0},
		"rollout of 1s":            {driven, fmt.Sprintf(rolloutSpec, "1s"), 250 * time.Millisecond},
		"rollout of 1h":            {driven, fmt.Sprintf(rolloutSpec, "1h"), MaxTick},
		"adaptive every 2s":        {driven, fmt.Sprintf(adaptiveSpec, "2s"), 500 * time.Millisecond},
		"rollout without state":    {undriven, fmt.Sprintf(rolloutSpec, "1s"), 0},
		"adaptive without a state": {undriven, fmt.Sprintf(adaptiveSpec, "4s"), time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			var pm *policy.Mesh
			if tc.spec != "" || name != "no policy" {
				pm = parse(t, tc.spec)
			}
			if got := tc.loop.period(pm); got != tc.want {
				t.Errorf("period %v, want %v", got, tc.want)
			}
		})
	}
}

func TestUndrivenRolloutIsExplained(t *testing.T) {
	l, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	pm := parse(t, fmt.Sprintf(rolloutSpec, "1s"))
	l.Loaded(pm)
	l.Tick(context.Background(), pm)
	st := l.Status(pm)
	if len(st.Notes) != 1 || st.Routes[0].Split[0].Effective != 100 || st.Routes[0].Adaptive {
		t.Errorf("status %+v: want the policy's split and a note saying why", st)
	}
	if l.Apply(pm) != pm {
		t.Error("an undriven rollout changed the policy")
	}
}

func post(t *testing.T, h http.Handler, body string) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewBufferString(body)))
	return rec.Code
}

// TestLabelsReachTheWeights feeds an adaptive ensemble through the HTTP
// handlers: member b answers wrong on every labelled request, so after one
// interval its weight falls to the bound, the overlay changes (Changed
// fires, Apply rewrites the member weights) and the change is audited.
func TestLabelsReachTheWeights(t *testing.T) {
	c := fakes.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rec := &fakes.Audit{}
	l, err := New(Config{Now: c.Now, Audit: rec})
	if err != nil {
		t.Fatal(err)
	}
	pm := parse(t, fmt.Sprintf(adaptiveSpec, "10s"))
	ctx := context.Background()
	l.Loaded(pm)
	l.Tick(ctx, pm) // starts tracking the ensemble
	<-l.Changed()   // the first report
	observe, feedback := l.ObservationHandler(), l.FeedbackHandler()
	for i := range 40 {
		truth := i % 2
		body := fmt.Sprintf(`{"route": "fraud", "requestId": "r%d", "ensemble": %d, "answers": [
			{"member": "fraud.a/fraud", "outcome": "answered", "value": %d},
			{"member": "fraud.b/fraud", "outcome": "answered", "value": %d}]}`, i, truth, truth, 1-truth)
		if code := post(t, observe, body); code != http.StatusNoContent {
			t.Fatalf("observation %d: HTTP %d", i, code)
		}
		if code := post(t, feedback, fmt.Sprintf(`{"requestId": "r%d", "value": %d}`, i, truth)); code != http.StatusNoContent {
			t.Fatalf("label %d: HTTP %d", i, code)
		}
	}
	if code := post(t, feedback, `{"requestId": "r0", "value": 0}`); code != http.StatusNotFound {
		t.Errorf("a second label of r0: HTTP %d, want 404", code)
	}
	c.Add(10 * time.Second)
	l.Tick(ctx, pm)
	select {
	case <-l.Changed():
	default:
		t.Fatal("the weights changed and Changed did not fire")
	}
	st := l.Status(pm)
	ms := st.Routes[0].Members
	if len(ms) != 2 || ms[0].Effective != 1 || ms[1].Effective != 0.1 || ms[1].Policy != 1 || ms[1].Quality == nil || *ms[1].Quality != 0 {
		t.Fatalf("members %+v: want a at the maximum, b at the minimum with quality 0", ms)
	}
	if got := l.Apply(pm).Routes[0].Spec.Ensemble.Members[1].Weight; got != 0.1 {
		t.Errorf("applied weight of b %v, want 0.1", got)
	}
	if pm.Routes[0].Spec.Ensemble.Members[1].Weight != 1 {
		t.Error("Apply changed the policy itself")
	}
	if len(rec.Events()) == 0 || rec.Events()[0].Kind != "ensemble_weight" {
		t.Errorf("audit events %+v, want the weight change", rec.Events())
	}
}
