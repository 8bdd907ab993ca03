package closedloop

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane/metricsource"
)

// memberSource answers the fanout filter's member counters: member b
// timed out on every call, a answered every one; anything else is down.
type memberSource struct{}

func (memberSource) Increase(_ context.Context, sel metricsource.Selector, _ time.Duration) (float64, error) {
	labels := map[string]string{}
	for _, m := range sel.Matchers {
		labels[m.Name] = m.Value
	}
	if labels["route"] != `fraud(_.+)?` {
		return 0, fmt.Errorf("unexpected route matcher %q: %w", labels["route"], metricsource.ErrDown)
	}
	switch sel.Metric + " " + labels["member"] {
	case memberAnswers + " fraud_a", memberTimeouts + " fraud_b":
		return 10, nil
	case memberTimeouts + " fraud_a", memberFailures + " fraud_a", memberAnswers + " fraud_b", memberFailures + " fraud_b":
		return 0, nil
	}
	return 0, fmt.Errorf("%s: %w", sel, metricsource.ErrDown)
}

func (memberSource) Quantile(context.Context, float64, metricsource.Selector, time.Duration) (float64, error) {
	return 0, metricsource.ErrNoData
}

// TestMemberCountersMoveWeights reads the fanout filter's member counters
// from the metric source: with no application help, a member that times
// out falls to the minimum weight at the next evaluation.
func TestMemberCountersMoveWeights(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l, err := New(Config{Now: c.now, Source: memberSource{}})
	if err != nil {
		t.Fatal(err)
	}
	pm := parse(t, fmt.Sprintf(adaptiveSpec, "10s"))
	ctx := context.Background()
	for range 5 { // four feeds of a quarter interval each, then the evaluation
		l.Tick(ctx, pm)
		c.add(2500 * time.Millisecond)
	}
	l.Tick(ctx, pm)
	ms := l.Status(pm).Routes[0].Members
	if len(ms) != 2 || ms[0].Effective != 1 || ms[1].Effective != 0.1 {
		t.Fatalf("members %+v: want a at the maximum and b, timing out, at the minimum", ms)
	}
}

func TestTagValue(t *testing.T) {
	for in, want := range map[string]string{
		"":           "none",
		"fraud.v1":   "fraud_v1",
		"ns/a:b-c_d": "ns/a:b-c_d",
		string(make([]byte, 70)): string(func() []byte {
			b := make([]byte, 64)
			for i := range b {
				b[i] = '_'
			}
			return b
		}()),
	} {
		if got := tagValue(in); got != want {
			t.Errorf("tagValue(%q) = %q, want %q", in, got, want)
		}
	}
}
