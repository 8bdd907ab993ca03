package rollout

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane/metricsource"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/internal/promtest"
)

// servers is an inference server's /metrics whose counters grow at every
// scrape: model version "good" serves 100 requests without failure, "bad"
// 100 with 10 failures.
type servers struct {
	mu sync.Mutex
	n  int
}

func (s *servers) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	fmt.Fprintf(w, "# TYPE maestro_inference_requests_total counter\n")
	fmt.Fprintf(w, "maestro_inference_requests_total{model=\"fraud\",version=\"good\",protocol=\"grpc\"} %d\n", 100*n)
	fmt.Fprintf(w, "maestro_inference_requests_total{model=\"fraud\",version=\"bad\",protocol=\"grpc\"} %d\n", 100*n)
	fmt.Fprintf(w, "# TYPE maestro_inference_request_failures_total counter\n")
	fmt.Fprintf(w, "maestro_inference_request_failures_total{model=\"fraud\",version=\"bad\",protocol=\"grpc\",code=\"13\"} %d\n", 10*n)
}

// TestRolloutOnRealPrometheus drives rollouts from a real Prometheus
// scraping an endpoint: the healthy version is promoted through every
// step, the failing one rolled back at its first judgement, and neither
// moves before Prometheus has the numbers.
func TestRolloutOnRealPrometheus(t *testing.T) {
	srv := httptest.NewServer(&servers{})
	t.Cleanup(srv.Close)
	prom := promtest.Start(t, promtest.Target{Job: "inference", Addr: strings.TrimPrefix(srv.URL, "http://")})
	src, err := metricsource.NewPrometheus(prom.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := mesh(t, `  service: fraud
  split: [{version: v1, weight: 100}]
  rollout: {version: v2, steps: [50, 100], stepInterval: 1m, minRequests: 150}
`)
	for _, c := range []struct {
		label string
		phase string
		kinds []string
	}{
		{label: "good", phase: PhasePromoted, kinds: []string{"rollout_start", "rollout_advance", "rollout_promote"}},
		{label: "bad", phase: PhaseFailed, kinds: []string{"rollout_start", "rollout_rollback"}},
	} {
		t.Run(c.label, func(t *testing.T) {
			h := newHarness(t)
			ctl, err := New(Config{
				StateDir: h.dir, Source: src, Audit: h.audit, Identity: "a", Now: h.clock.Now,
				Signals: func(_ *policy.Route, _, _ string) metricsource.Signals {
					return metricsource.InferenceSignals("fraud", c.label)
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			tick := time.NewTicker(promtest.ScrapeInterval)
			defer tick.Stop()
			for {
				if err := ctl.Tick(ctx, m); err != nil {
					t.Fatal(err)
				}
				if st := ctl.View().Rollouts[0]; st.Phase != PhaseProgressing {
					if st.Phase != c.phase {
						t.Fatalf("phase %s (%s), want %s", st.Phase, st.LastReason, c.phase)
					}
					break
				}
				h.clock.Add(time.Minute)
				select {
				case <-ctx.Done():
					t.Fatalf("still progressing after 60s: %+v", ctl.View().Rollouts[0])
				case <-tick.C:
				}
			}
			var decisions []string
			for _, k := range h.audit.Kinds() {
				if k != "rollout_hold" {
					decisions = append(decisions, k)
				}
			}
			if !slices.Equal(decisions, c.kinds) {
				t.Fatalf("decisions %v, want %v (holds aside)", h.audit.Kinds(), c.kinds)
			}
			for _, ev := range h.audit.Events() {
				if ev.Kind == "rollout_hold" && !strings.Contains(ev.Reason, "too few requests") {
					t.Errorf("hold for another reason than missing data: %q", ev.Reason)
				}
			}
		})
	}
}
