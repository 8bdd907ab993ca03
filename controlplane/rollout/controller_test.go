package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane/metricsource"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/internal/fakes"
)

const services = `apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud}
spec:
  versions:
    - {name: v1, endpoints: [{address: 127.0.0.1, port: 9001}]}
    - {name: v2, endpoints: [{address: 127.0.0.1, port: 9002}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud}
spec:
`

// mesh is the fraud route with spec lines appended (indented two spaces).
func mesh(t *testing.T, spec string) *policy.Mesh {
	t.Helper()
	m, err := policy.Parse("p.yaml", []byte(services+spec))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const canary = `  service: fraud
  match: {model: fraud}
  split: [{version: v1, weight: 100}]
  slo: {availability: 99, latency: [{percentile: 99, threshold: 250ms}]}
  rollout: {version: v2, steps: [5, 25, 50, 100], stepInterval: 1m, minRequests: 50}
`

// fakeSource answers each selector with a set value.
type fakeSource struct {
	mu        sync.Mutex
	increases map[string]float64
	quantiles map[string]float64
	err       error
}

func newFakeSource() *fakeSource {
	return &fakeSource{increases: map[string]float64{}, quantiles: map[string]float64{}}
}

// serve sets what version v2 of fraud did in any window.
func (f *fakeSource) serve(requests, errs float64, p99 time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sig := metricsource.EnvoyClusterSignals("fraud.v2")
	f.increases[sig.Requests.String()] = requests
	f.increases[sig.Errors.String()] = errs
	f.quantiles[sig.Latency.String()] = float64(p99) / float64(sig.LatencyUnit)
}

func (f *fakeSource) Increase(_ context.Context, sel metricsource.Selector, _ time.Duration) (float64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.increases[sel.String()], f.err
}

func (f *fakeSource) Quantile(_ context.Context, _ float64, sel metricsource.Selector, _ time.Duration) (float64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q, ok := f.quantiles[sel.String()]
	if !ok && f.err == nil {
		return 0, metricsource.ErrNoData
	}
	return q, f.err
}

// recorder keeps audit events.
type harness struct {
	dir   string
	clock *fakes.Clock
	src   *fakeSource
	audit *fakes.Audit
}

func newHarness(t *testing.T) *harness {
	return &harness{dir: t.TempDir(), clock: fakes.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), src: newFakeSource(), audit: &fakes.Audit{}}
}

func (h *harness) controller(t *testing.T, id string) *Controller {
	t.Helper()
	c, err := New(Config{StateDir: h.dir, Source: h.src, Audit: h.audit, Identity: id, LeaseTTL: 90 * time.Second, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tick(t *testing.T, c *Controller, m *policy.Mesh) {
	t.Helper()
	if err := c.Tick(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// weights is the overlay's split of route fraud as "v1=95 v2=5".
func weights(c *Controller) string {
	var parts []string
	for _, d := range c.Overlay()["fraud"] {
		parts = append(parts, fmt.Sprintf("%s=%d", d.Version, d.Weight))
	}
	return strings.Join(parts, " ")
}

func TestPromotedThroughEveryStep(t *testing.T) {
	h := newHarness(t)
	c := h.controller(t, "a")
	m := mesh(t, canary)
	h.src.serve(200, 0, 40*time.Millisecond)
	tick(t, c, m)
	want := []string{"v1=95 v2=5", "v1=75 v2=25", "v1=50 v2=50", "v1=0 v2=100", "v1=0 v2=100"}
	for i, w := range want {
		if got := weights(c); got != w {
			t.Fatalf("after %d intervals: weights %q, want %q", i, got, w)
		}
		h.clock.Add(30 * time.Second)
		tick(t, c, m) // half an interval: nothing is due
		if got := weights(c); got != w {
			t.Fatalf("half an interval later: weights %q, want %q", got, w)
		}
		h.clock.Add(30 * time.Second)
		tick(t, c, m)
	}
	wantKinds := []string{"rollout_start", "rollout_advance", "rollout_advance", "rollout_advance", "rollout_promote"}
	if got := h.audit.Kinds(); !slices.Equal(got, wantKinds) {
		t.Fatalf("audit %v, want %v", got, wantKinds)
	}
	v := c.View()
	if !v.Leader || len(v.Rollouts) != 1 || v.Rollouts[0].Phase != PhasePromoted {
		t.Fatalf("view %+v, want one promoted rollout led here", v)
	}
	last := h.audit.Last()
	for k, want := range map[string]string{"requests": "200", "error_rate_pct": "0", "p99": "40ms", "route": "fraud", "version": "v2", "weight_now": "100"} {
		if last.Details[k] != want {
			t.Errorf("promote event %s = %q, want %q (all %v)", k, last.Details[k], want, last.Details)
		}
	}
}

func TestRollback(t *testing.T) {
	for _, c := range []struct {
		name           string
		requests, errs float64
		p99            time.Duration
		reason         string
	}{
		{name: "errors", requests: 200, errs: 10, p99: 40 * time.Millisecond, reason: "error rate 5% is above 1%"},
		{name: "latency", requests: 200, p99: 400 * time.Millisecond, reason: "p99 latency 400ms is above 250ms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			ctl := h.controller(t, "a")
			m := mesh(t, canary)
			h.src.serve(200, 0, 40*time.Millisecond)
			tick(t, ctl, m)
			h.clock.Add(time.Minute)
			tick(t, ctl, m) // 5 -> 25
			h.src.serve(c.requests, c.errs, c.p99)
			h.clock.Add(time.Minute)
			tick(t, ctl, m) // the breach is judged within one interval
			if got := weights(ctl); got != "v1=100 v2=0" {
				t.Fatalf("weights %q after the breach, want v1=100 v2=0", got)
			}
			ev := h.audit.Last()
			if ev.Kind != "rollout_rollback" || !strings.Contains(ev.Reason, c.reason) {
				t.Fatalf("last event %s %q, want rollout_rollback %q", ev.Kind, ev.Reason, c.reason)
			}
			// Failed stays failed, even if the version recovers.
			h.src.serve(200, 0, 40*time.Millisecond)
			h.clock.Add(5 * time.Minute)
			tick(t, ctl, m)
			if got, st := weights(ctl), ctl.View().Rollouts[0]; got != "v1=100 v2=0" || st.Phase != PhaseFailed || len(h.audit.Kinds()) != 3 {
				t.Fatalf("after failure: weights %q phase %s events %v", got, st.Phase, h.audit.Kinds())
			}
		})
	}
}

func TestHoldsWithoutEnoughRequests(t *testing.T) {
	h := newHarness(t)
	c := h.controller(t, "a")
	m := mesh(t, canary)
	h.src.serve(10, 0, 40*time.Millisecond)
	tick(t, c, m)
	h.clock.Add(time.Minute)
	tick(t, c, m)
	if got := weights(c); got != "v1=95 v2=5" {
		t.Fatalf("weights %q, want the first step held", got)
	}
	if ev := h.audit.Last(); ev.Kind != "rollout_hold" || ev.Reason != "too few requests: 10 of 50" {
		t.Fatalf("event %s %q", ev.Kind, ev.Reason)
	}
	h.src.serve(60, 0, 40*time.Millisecond)
	h.clock.Add(time.Minute)
	tick(t, c, m)
	if got := weights(c); got != "v1=75 v2=25" {
		t.Fatalf("weights %q, want the next step once requests sufficed", got)
	}
}

// endpoint serves Envoy cluster stats of fraud.v2 whose counts the test
// sets, or fails.
type endpoint struct {
	mu       sync.Mutex
	requests int
	down     bool
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.down {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"fraud.v2\"} %d\n", e.requests)
	fmt.Fprintf(w, "envoy_cluster_upstream_rq_xx{envoy_cluster_name=\"fraud.v2\",envoy_response_code_class=\"2\"} %d\n", e.requests)
}

func (e *endpoint) set(requests int, down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests, e.down = requests, down
}

// TestSourceDownHolds runs the controller on a Scraper of a data-plane
// endpoint that goes down: the step holds, saying why, and proceeds once
// the endpoint is back.
func TestSourceDownHolds(t *testing.T) {
	h := newHarness(t)
	ep := &endpoint{}
	srv := httptest.NewServer(ep)
	t.Cleanup(srv.Close)
	scraper := metricsource.NewScraper(metricsource.ScraperConfig{Targets: []metricsource.Target{{Name: "gw", URL: srv.URL}}, Now: h.clock.Now})
	c, err := New(Config{StateDir: h.dir, Source: scraper, Audit: h.audit, Identity: "a", Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	m := mesh(t, `  service: fraud
  split: [{version: v1, weight: 100}]
  rollout: {version: v2, steps: [50, 100], stepInterval: 1m, minRequests: 50}
`)
	scrape := func() { _ = scraper.Scrape(context.Background()) }
	ep.set(0, false)
	scrape()
	tick(t, c, m)
	h.clock.Add(30 * time.Second)
	ep.set(500, false)
	scrape()
	h.clock.Add(30 * time.Second)
	ep.set(1000, true)
	scrape()
	tick(t, c, m)
	ev := h.audit.Last()
	if weights(c) != "v1=50 v2=50" || ev.Kind != "rollout_hold" || !strings.Contains(ev.Reason, "not promoting blind") || !strings.Contains(ev.Reason, "scrape gw") {
		t.Fatalf("with the source down: weights %q, event %s %q", weights(c), ev.Kind, ev.Reason)
	}
	ep.set(1000, false)
	h.clock.Add(time.Minute)
	scrape()
	tick(t, c, m)
	if got := weights(c); got != "v1=0 v2=100" {
		t.Fatalf("source back: weights %q (event %q)", got, h.audit.Last().Reason)
	}
}

func TestEditRestartsAndRemovalClears(t *testing.T) {
	h := newHarness(t)
	c := h.controller(t, "a")
	h.src.serve(200, 0, 40*time.Millisecond)
	m := mesh(t, canary)
	tick(t, c, m)
	h.clock.Add(time.Minute)
	tick(t, c, m)
	if got := weights(c); got != "v1=75 v2=25" {
		t.Fatalf("weights %q", got)
	}
	edited := mesh(t, strings.Replace(canary, "minRequests: 50", "minRequests: 60", 1))
	tick(t, c, edited)
	if got, ev := weights(c), h.audit.Last(); got != "v1=95 v2=5" || ev.Kind != "rollout_restart" {
		t.Fatalf("after an edit: weights %q, event %s", got, ev.Kind)
	}
	tick(t, c, mesh(t, "  service: fraud\n  split: [{version: v1, weight: 100}]\n"))
	if v := c.View(); len(v.Overlay) != 0 || len(v.Rollouts) != 0 || h.audit.Last().Kind != "rollout_remove" {
		t.Fatalf("after removal: %+v, last event %s", v, h.audit.Last().Kind)
	}
}

// TestResumesAfterRestart replaces the controller in mid-rollout, as a
// restarted control plane does: the new one continues from the file.
func TestResumesAfterRestart(t *testing.T) {
	h := newHarness(t)
	m := mesh(t, canary)
	h.src.serve(200, 0, 40*time.Millisecond)
	first := h.controller(t, "a")
	tick(t, first, m)
	h.clock.Add(time.Minute)
	tick(t, first, m)
	second := h.controller(t, "a") // same replica, new process
	tick(t, second, m)
	if got := weights(second); got != "v1=75 v2=25" {
		t.Fatalf("restarted controller serves %q, want the step it had reached", got)
	}
	h.clock.Add(time.Minute)
	tick(t, second, m)
	if got := weights(second); got != "v1=50 v2=50" {
		t.Fatalf("restarted controller then serves %q, want the next step", got)
	}
	if n := len(h.audit.Kinds()); n != 3 {
		t.Errorf("%d events (%v), want 3: a restart is no new decision", n, h.audit.Kinds())
	}
}

// TestOneReplicaDrives runs two controllers on one state directory: only
// the lease holder decides, both serve its weights, and the other takes
// over once the holder stops renewing.
func TestOneReplicaDrives(t *testing.T) {
	h := newHarness(t)
	m := mesh(t, canary)
	h.src.serve(200, 0, 40*time.Millisecond)
	a, b := h.controller(t, "a"), h.controller(t, "b")
	for i := 0; i < 2; i++ {
		tick(t, a, m)
		tick(t, b, m)
		h.clock.Add(time.Minute)
	}
	if !a.View().Leader || b.View().Leader || b.View().Holder != "a" {
		t.Fatalf("leaders: a %v, b %v (holder %q)", a.View().Leader, b.View().Leader, b.View().Holder)
	}
	if weights(a) != "v1=75 v2=25" || weights(b) != weights(a) {
		t.Fatalf("a serves %q, b %q; want both at the second step", weights(a), weights(b))
	}
	if n := len(h.audit.Kinds()); n != 2 {
		t.Fatalf("%d decisions (%v), want 2: one start, one advance", n, h.audit.Kinds())
	}
	// a stops (crashed): after the lease expires b takes over and goes on.
	h.clock.Add(31 * time.Second) // a renewed a minute ago; ttl 90s
	tick(t, b, m)
	if !b.View().Leader || weights(b) != "v1=50 v2=50" {
		t.Fatalf("b after takeover: leader %v, weights %q", b.View().Leader, weights(b))
	}
	tick(t, a, m) // a comes back: it follows
	if a.View().Leader || weights(a) != "v1=50 v2=50" {
		t.Fatalf("a after takeover: leader %v, weights %q", a.View().Leader, weights(a))
	}
}

func TestLeaseExclusive(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := func() time.Time { return now }
	la, _ := NewLease(dir, "a", time.Minute, clk)
	lb, _ := NewLease(dir, "b", time.Minute, clk)
	// Both try at once, many times: exactly one holds each round.
	for i := 0; i < 20; i++ {
		var wg sync.WaitGroup
		var held [2]bool
		for j, l := range []*Lease{la, lb} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, _, err := l.Acquire()
				if err != nil {
					t.Error(err)
				}
				held[j] = ok
			}()
		}
		wg.Wait()
		if held[0] == held[1] {
			t.Fatalf("round %d: a holds %v, b holds %v", i, held[0], held[1])
		}
	}
	if err := la.Release(); err != nil {
		t.Fatal(err)
	}
	if err := lb.Release(); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := lb.Acquire(); !ok {
		t.Error("b cannot take a released lease")
	}
	if ok, holder, _ := la.Acquire(); ok || holder != "b" {
		t.Errorf("a took b's live lease (holder %q)", holder)
	}
}

func TestStateFileErrors(t *testing.T) {
	h := newHarness(t)
	c := h.controller(t, "a")
	if err := os.WriteFile(filepath.Join(h.dir, StateFile), []byte(`{"version": 9}`), 0o600); err != nil {
		t.Fatal(err)
	}
	err := c.Tick(context.Background(), mesh(t, canary))
	if err == nil || !strings.Contains(err.Error(), "layout version 9") || c.View().Error == "" {
		t.Fatalf("got %v, view error %q", err, c.View().Error)
	}
	if err := c.Tick(context.Background(), nil); err == nil {
		t.Error("a tick without a policy passed")
	}
	if _, err := New(Config{StateDir: h.dir}); err == nil {
		t.Error("New without identity accepted")
	}
	if _, err := New(Config{Identity: "a"}); err == nil {
		t.Error("New without state dir accepted")
	}
	if _, err := New(Config{Identity: "a", StateDir: filepath.Join(h.dir, "missing")}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("New with a missing state dir: %v", err)
	}
}

func TestOverlayApply(t *testing.T) {
	m := mesh(t, canary)
	o := Overlay{"fraud": {{Service: "fraud", Version: "v1", Weight: 75}, {Service: "fraud", Version: "v2", Weight: 25}}}
	out := o.Apply(m)
	if got := out.Route("fraud").Spec.Split; len(got) != 2 || got[1].Weight != 25 {
		t.Fatalf("applied split %v", got)
	}
	if got := m.Route("fraud").Spec.Split; len(got) != 1 || got[0].Weight != 100 {
		t.Fatalf("the policy's own split changed: %v", got)
	}
	if Overlay(nil).Apply(m) != m || (Overlay{"other": nil}).Apply(m) != m {
		t.Error("an overlay changing nothing copied the mesh")
	}
}

// TestRunReleasesLease runs the loop until the first rollout shows, stops
// it, and checks another replica can take the lease at once.
func TestRunReleasesLease(t *testing.T) {
	h := newHarness(t)
	c := h.controller(t, "a")
	m := mesh(t, canary)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, time.Hour, func() *policy.Mesh { return m }) }()
	deadline := time.After(10 * time.Second)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for len(c.View().Rollouts) == 0 {
		select {
		case <-deadline:
			t.Fatal("no rollout started within 10s")
		case <-poll.C:
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	other, err := NewLease(h.dir, "b", time.Minute, h.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if ok, holder, err := other.Acquire(); !ok || err != nil {
		t.Fatalf("lease not released: holder %q, %v", holder, err)
	}
	data, err := json.Marshal(c.View())
	if err != nil || !strings.Contains(string(data), `"overlay":{"fraud":[`) {
		t.Fatalf("view JSON %s, %v", data, err)
	}
}

func TestNoSourceHolds(t *testing.T) {
	h := newHarness(t)
	c, err := New(Config{StateDir: h.dir, Audit: h.audit, Identity: "a", Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	m := mesh(t, canary)
	tick(t, c, m)
	h.clock.Add(time.Minute)
	tick(t, c, m)
	if ev := h.audit.Last(); weights(c) != "v1=95 v2=5" || ev.Kind != "rollout_hold" || !strings.Contains(ev.Reason, "no metric source configured") {
		t.Fatalf("weights %q, event %s %q", weights(c), ev.Kind, ev.Reason)
	}
}
