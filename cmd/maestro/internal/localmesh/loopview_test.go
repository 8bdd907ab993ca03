package localmesh

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/cmd/maestro/internal/adminstatus"
	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/controlplane/rollout"
)

func TestRolloutPart(t *testing.T) {
	steps := []uint32{10, 50, 100}
	for name, tc := range map[string]struct {
		state rollout.State
		want  string
	}{
		"started": {rollout.State{Version: "v2", Steps: steps, Phase: rollout.PhaseProgressing, Weight: 10,
			LastDecision: rollout.DecisionStart, LastReason: "new rollout"},
			"rollout v2 progressing, step 1/3, weight 10 (new rollout)"},
		"advanced": {rollout.State{Version: "v2", Steps: steps, Phase: rollout.PhaseProgressing, Step: 1, Weight: 50,
			LastDecision: rollout.DecisionAdvance, LastReason: "every threshold met"},
			"rollout v2 progressing, step 2/3, weight 50 (every threshold met)"},
		"held": {rollout.State{Version: "v2", Steps: steps, Phase: rollout.PhaseProgressing, Weight: 10,
			LastDecision: rollout.DecisionHold, LastReason: "too few requests: 3 of 50"},
			"rollout v2 held at step 1/3, weight 10: too few requests: 3 of 50"},
		"promoted": {rollout.State{Version: "v2", Steps: steps, Phase: rollout.PhasePromoted, Step: 2, Weight: 100,
			LastDecision: rollout.DecisionPromote, LastReason: "the last step passed: every threshold met"},
			"rollout v2 promoted, weight 100"},
		"rolled back": {rollout.State{Version: "v2", Steps: steps, Phase: rollout.PhaseFailed, Step: 1, Weight: 0,
			LastDecision: rollout.DecisionRollback, LastReason: "error rate 4% is above 1%"},
			"rollout v2 rolled back at step 2/3, weight 0: error rate 4% is above 1%"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := rolloutPart(&tc.state); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestRouteLinesShowTheClosedLoop(t *testing.T) {
	q := 0.93456
	st := RouteStats{}
	st.route("churn").Rollout = &rollout.State{Version: "v2", Steps: []uint32{10, 50, 100}, Phase: rollout.PhasePromoted, Step: 2, Weight: 100}
	st.route("fraud-ensemble").Weights = []closedloop.MemberWeight{
		{Member: "fraud.v1/fraud", Policy: 1, Effective: 1.23456, Quality: &q},
		{Member: "fraud.v2/fraud", Policy: 2, Effective: 2},
	}
	want := []string{
		"  churn           rollout v2 promoted, weight 100",
		"  fraud-ensemble  adaptive weights fraud.v1/fraud 1.235 (policy 1, quality 0.93), fraud.v2/fraud 2 (policy 2)",
	}
	if got := routeLines(st); !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// liveLines returns the parts of route's live lines in out that begin with
// part, in the order printed, without repeats in a row.
func liveLines(out, route, part string) []string {
	re := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(route) + ` .*?(` + part + `[^|\n]*)`)
	var got []string
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		if s := strings.TrimSpace(m[1]); len(got) == 0 || got[len(got)-1] != s {
			got = append(got, s)
		}
	}
	return got
}

// TestUpDemoShowsTheRolloutAndAdaptiveWeights runs `maestro up
// --demo-traffic` on the embedded demo: the live view shows churn's
// rollout walking its steps to promoted, after which every churn request
// is v2's, and the fraud ensemble's adaptive member weights as the tuner
// moves them from the policy's on the gateway's member counters, the
// same state the control plane's /debug/status (`maestro status`) gives.
func TestUpDemoShowsTheRolloutAndAdaptiveWeights(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole demo mesh")
	}
	m := startDemo(t, func(c *Config) { c.DemoTraffic, c.Rate = true, 100 })
	ready := time.Now()

	// Three steps of 5s, each judged; a hold on a slow machine adds 5s.
	// The REST route has the same rollout.
	ended := map[string]rollout.State{}
	m.await(t, 3*waitLimit, "churn's rollouts ended", func(_ Counts, r RouteStats) bool {
		for _, name := range []string{"churn", "churn-rest"} {
			if c := r[name]; c != nil && c.Rollout != nil && c.Rollout.Phase != rollout.PhaseProgressing {
				ended[name] = *c.Rollout
			}
		}
		return len(ended) == 2
	})
	for name, s := range ended {
		if s.Phase != rollout.PhasePromoted || s.Weight != 100 {
			t.Fatalf("%s's rollout %s at weight %d: %s", name, s.Phase, s.Weight, s.LastReason)
		}
	}
	t.Logf("both churn rollouts promoted %s after the mesh was ready", time.Since(ready).Round(100*time.Millisecond))
	// Every step showed, in order, before the promotion.
	seen := liveLines(m.out.String(), "churn", "rollout ")
	t.Logf("churn's rollout in the live view: %q", seen)
	stepRE := regexp.MustCompile(`^rollout v2 (?:progressing, |held at )step (\d)/3, weight (\d+)`)
	var weights []int
	for i, s := range seen {
		if s == "rollout v2 promoted, weight 100" {
			if i != len(seen)-1 {
				t.Errorf("the live view showed %q after the promotion", seen[i+1:])
			}
			break
		}
		sm := stepRE.FindStringSubmatch(s)
		if sm == nil {
			t.Fatalf("live rollout %q: want progressing or held at a step", s)
		}
		step, _ := strconv.Atoi(sm[1])
		w, _ := strconv.Atoi(sm[2])
		if want := []int{10, 50, 100}[step-1]; w != want {
			t.Errorf("%q: step %d at weight %d, want %d", s, step, w, want)
		}
		if n := len(weights); n == 0 || weights[n-1] != w {
			weights = append(weights, w)
		}
	}
	if !slices.Equal(weights, []int{10, 50, 100}) || seen[len(seen)-1] != "rollout v2 promoted, weight 100" {
		t.Errorf("the live view showed the weights %v then %q, want 10, 50, 100 then promoted", weights, seen[len(seen)-1])
	}

	// Promoted, v2 serves all of churn: proxyless clients and both
	// gateways.
	var base Counts
	m.await(t, waitLimit, "churn served by v2 alone", func(c Counts, _ RouteStats) bool {
		if base == nil || c["churn"]["v1"] != base["churn"]["v1"] {
			base = c
			return false
		}
		return c["churn"]["v2"]-base["churn"]["v2"] >= 100
	})

	// The control plane's own state says the same.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	doc, err := adminstatus.Fetch(ctx, http.DefaultClient, m.started.Admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range doc.Routes {
		if r.Name != "churn" && r.Name != "churn-rest" {
			continue
		}
		for _, s := range r.Split {
			if want := map[string]uint32{"v1": 0, "v2": 100}[s.Version]; s.Effective != want {
				t.Errorf("/debug/status: %s %s served at %d, want %d", r.Name, s.Version, s.Effective, want)
			}
		}
	}

	// The adaptive ensemble: the tuner moves a weight off the policy's
	// once the gateway's member counters have been read for an interval.
	var moved []closedloop.MemberWeight
	m.await(t, waitLimit, "fraud-ensemble's weights moved", func(_ Counts, r RouteStats) bool {
		e := r["fraud-ensemble"]
		if e == nil || len(e.Weights) != 3 {
			return false
		}
		for _, w := range e.Weights {
			if w.Quality != nil && w.Effective != w.Policy {
				moved = slices.Clone(e.Weights)
				return true
			}
		}
		return false
	})
	for _, w := range moved {
		if w.Effective < 0.1 || w.Effective > 2 {
			t.Errorf("member %s at weight %v, outside the demo's bounds 0.1..2", w.Member, w.Effective)
		}
	}
	out := m.out.String()
	shown := liveLines(out, "fraud-ensemble", "adaptive weights ")
	memberRE := regexp.MustCompile(`(\S+) ([\d.]+) \(policy ([\d.]+)(?:, quality ([\d.]+))?\)`)
	movedInView := false
	for _, s := range shown {
		ms := memberRE.FindAllStringSubmatch(s, -1)
		if len(ms) != 3 || ms[0][1] != "fraud.v1/fraud" || ms[1][1] != "fraud.v2/fraud" || ms[2][1] != "fraud.logistic/fraud-logistic" {
			t.Fatalf("live weights %q: want the three members in the policy's order", s)
		}
		for _, mm := range ms {
			if mm[2] != mm[3] && mm[4] != "" {
				movedInView = true
			}
		}
	}
	if !movedInView {
		t.Fatalf("the live view never showed a weight the tuner moved: %q", shown)
	}
	if len(liveLines(out, "fraud-ensemble-rest", "adaptive weights ")) > 0 {
		t.Error("the static REST ensemble shows adaptive weights")
	}
	t.Logf("fraud-ensemble in the live view: %q", shown[len(shown)-1])
}

// TestLoopViewReadsTheStatusAndKeepsItAcrossAnOutage: the live view shows
// the rollouts and adaptive members of /debug/status, and keeps showing
// them while the control plane does not answer (a restart).
func TestLoopViewReadsTheStatusAndKeepsItAcrossAnOutage(t *testing.T) {
	q := 0.5
	doc := adminstatus.Document{Version: "v", Status: closedloop.Status{
		Routes: []closedloop.RouteStatus{
			{Name: "fraud-ensemble", Adaptive: true, Members: []closedloop.MemberWeight{{Member: "fraud.v1/fraud", Policy: 1, Effective: 0.1, Quality: &q}}},
			{Name: "static", Members: []closedloop.MemberWeight{{Member: "static.a/m", Policy: 1, Effective: 1}}},
		},
		Rollouts: []rollout.State{{Route: "churn", Version: "v2", Steps: []uint32{10, 50, 100}, Phase: rollout.PhaseProgressing, Weight: 10}},
	}}
	var mu sync.Mutex
	down := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			http.Error(w, "restarting", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(doc)
	}))
	defer srv.Close()
	lv := &loopView{admin: srv.URL, logger: slog.New(slog.DiscardHandler)}
	want := []string{
		"  churn           rollout v2 progressing, step 1/3, weight 10",
		"  fraud-ensemble  adaptive weights fraud.v1/fraud 0.1 (policy 1, quality 0.50)",
	}
	for _, outage := range []bool{false, true} {
		mu.Lock()
		down = outage
		mu.Unlock()
		st := RouteStats{}
		lv.fill(context.Background(), st)
		if got := routeLines(st); !slices.Equal(got, want) {
			t.Errorf("control plane down %v: got\n%s\nwant\n%s", outage, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}
