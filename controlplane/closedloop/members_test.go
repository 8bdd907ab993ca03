package closedloop

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane/metricsource"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/internal/fakes"
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

// tickInterval runs l over one 10s interval of pm: four feeds of a
// quarter interval each, then the evaluation.
func tickInterval(l *Loop, c *fakes.Clock, pm *policy.Mesh) {
	ctx := context.Background()
	for range 5 {
		l.Tick(ctx, pm)
		c.Add(2500 * time.Millisecond)
	}
	l.Tick(ctx, pm)
}

// TestMemberCountersMoveWeights reads the fanout filter's member counters
// from the metric source: with no application help, a member that times
// out falls to the minimum weight at the next evaluation.
func TestMemberCountersMoveWeights(t *testing.T) {
	c := fakes.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l, err := New(Config{Now: c.Now, Source: memberSource{}})
	if err != nil {
		t.Fatal(err)
	}
	pm := parse(t, fmt.Sprintf(adaptiveSpec, "10s"))
	tickInterval(l, c, pm)
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

// counters serves the fanout filter's member counters as a gateway's
// /stats/prometheus does, growing at every scrape: member a answers every
// call, member b times out on every one.
func counters(t *testing.T) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		n += 10
		calls := n
		mu.Unlock()
		for _, m := range []struct {
			metric string
			a, b   int
		}{{memberAnswers, calls, 0}, {memberTimeouts, 0, calls}, {memberFailures, 0, 0}} {
			fmt.Fprintf(w, "# TYPE %s counter\n", m.metric)
			fmt.Fprintf(w, "%s{route=\"fraud\",member=\"fraud_a\"} %d\n", m.metric, m.a)
			fmt.Fprintf(w, "%s{route=\"fraud\",member=\"fraud_b\"} %d\n", m.metric, m.b)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestSetTargetsAddsAGatewayLater: a loop made with one target (an
// inference server's) and given a gateway's stats afterwards, as `maestro
// up` does once its gateways run, reads the member counters from the new
// target and moves the weights.
func TestSetTargetsAddsAGatewayLater(t *testing.T) {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE maestro_inference_requests_total counter\nmaestro_inference_requests_total 1\n")
	}))
	t.Cleanup(server.Close)
	gateway := counters(t)
	c := fakes.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l, err := New(Config{Now: c.Now, Targets: []metricsource.Target{{Name: "server", URL: server.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.String(); got != "1 scrape targets" {
		t.Errorf("String() = %q before SetTargets", got)
	}
	if err := l.SetTargets([]metricsource.Target{{Name: "server", URL: server.URL}, {Name: "gateway", URL: gateway.URL}}); err != nil {
		t.Fatal(err)
	}
	if got := l.String(); got != "2 scrape targets" {
		t.Errorf("String() = %q after SetTargets", got)
	}
	pm := parse(t, fmt.Sprintf(adaptiveSpec, "10s"))
	tickInterval(l, c, pm)
	st := l.Status(pm).Routes[0]
	ms := st.Members
	if !st.Adaptive || len(ms) != 2 || ms[0].Effective != 1 || ms[1].Effective != 0.1 {
		t.Fatalf("route %+v: want it adaptive, a at the maximum and b, timing out, at the minimum", st)
	}
}

func TestSetTargetsNeedsAScraper(t *testing.T) {
	for name, cfg := range map[string]Config{
		"external source": {Source: memberSource{}, Targets: []metricsource.Target{{Name: "x", URL: "http://127.0.0.1:1"}}},
		"no targets":      {},
	} {
		t.Run(name, func(t *testing.T) {
			l, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.SetTargets([]metricsource.Target{{Name: "gateway", URL: "http://127.0.0.1:1"}}); err == nil {
				t.Error("SetTargets succeeded on a loop that does not scrape")
			}
		})
	}
}
