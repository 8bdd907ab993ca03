package gateway_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/controlplane/metricsource"
	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/server"
	"github.com/maestro-ml/maestro/internal/e2etest"
)

// loopStep is the rollouts' step interval, the shortest the policy
// allows; the loop ticks every quarter of it.
const loopStep = time.Second

// loopLimit bounds a whole rollout: four one-second steps plus holds
// while a 5% step gathers its requests on a loaded machine.
const loopLimit = 90 * time.Second

// gatewayCanaryPolicy rolls fraud v2 out over v1 behind gateway edge,
// judged on Envoy's upstream series of the versions' clusters.
func gatewayCanaryPolicy(wasm, v1, v2 string) string {
	return e2etest.FraudPolicy(wasm, []e2etest.FraudVersion{{Name: "v1", Addr: v1}, {Name: "v2", Addr: v2}},
		e2etest.FraudRoute{Name: "fraud", Spec: `split: [{version: v1, weight: 100}]
timeout: 2s
rollout:
  version: v2
  steps: [5, 25, 50, 100]
  stepInterval: 1s
  minRequests: 20
  analysis: {maxErrorRate: 5}
`})
}

// loopCP is a control plane whose closed loop reads src.
type loopCP struct {
	xds, admin string
	plane      *e2etest.Plane
}

// startLoopCP runs a control plane serving path with rollouts driven
// from stateDir on src's numbers, auditing to auditPath.
func startLoopCP(t *testing.T, path, stateDir, auditPath string, src metricsource.Source) *loopCP {
	t.Helper()
	loop, err := closedloop.New(closedloop.Config{
		StateDir: stateDir, Identity: "cp-1", Source: src, Signals: closedloop.SignalsEnvoy,
		LeaseTTL: 5 * time.Second, Audit: e2etest.AuditFile(t, auditPath),
	})
	if err != nil {
		t.Fatal(err)
	}
	p := e2etest.Start(t, e2etest.Config{Path: path, Limit: waitLimit,
		Certs: controlplane.CertConfig{DryRun: true, Plaintext: true},
		Server: func(pc *controlplane.Config, _ *controlplane.Certificates) {
			pc.Insecure, pc.InsecureSecrets, pc.Loop = true, true, loop
		},
	})
	return &loopCP{xds: p.Addrs.XDS.String(), admin: p.Addrs.Admin.String(), plane: p}
}

// status reads the control plane's /debug/status.
func (p *loopCP) status(t *testing.T) closedloop.Status { return p.plane.Status(t) }

// waitRollout polls the status until the only rollout reaches phase.
func (p *loopCP) waitRollout(t *testing.T, phase string) closedloop.Status {
	t.Helper()
	return p.plane.WaitRollout(t, "rollout "+phase, loopLimit, e2etest.Phase(phase))
}

// gatewayScraper scrapes the gateway's /stats/prometheus every tick of
// the loop, as `maestro controlplane --metrics-target` does; its target is
// set once the gateway's admin port is known.
func gatewayScraper(t *testing.T) *metricsource.Scraper {
	t.Helper()
	s := metricsource.NewScraper(metricsource.ScraperConfig{Timeout: 2 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx, loopStep/4)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// sendThroughGateway calls ModelInfer for fraud through the gateway until
// stopped, counting answers per server and failures.
func sendThroughGateway(t *testing.T, c pb.GRPCInferenceServiceClient) *e2etest.Traffic {
	t.Helper()
	return e2etest.SendTraffic(t, func(ctx context.Context) (string, error) {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-maestro-model", "fraud")
		var hdr metadata.MD
		_, err := c.ModelInfer(ctx, e2etest.InferRequest("fraud"), grpc.Header(&hdr))
		if n := hdr.Get(server.ServerHeader); err == nil && len(n) == 1 {
			return n[0], nil
		}
		return "", err
	})
}

// rolloutDecisions reads the audit log's rollout decisions as
// "advance@25" (the decision and the weight after it), with their events.
func rolloutDecisions(t *testing.T, path string) ([]string, []audit.Event) {
	t.Helper()
	return e2etest.RolloutDecisions(t, path)
}

// gatewayRollout is a control plane driving the canary policy of v1 and
// v2, judged on a gateway's own /stats/prometheus, with a gRPC client
// through that gateway.
type gatewayRollout struct {
	cp        *loopCP
	gw        *e2etest.Gateway
	client    pb.GRPCInferenceServiceClient
	auditPath string
}

func startGatewayRollout(t *testing.T, wasm, v1, v2 string) *gatewayRollout {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "mesh.yaml")
	e2etest.ReplaceFile(t, path, gatewayCanaryPolicy(wasm, v1, v2))
	scraper := gatewayScraper(t)
	r := &gatewayRollout{auditPath: filepath.Join(dir, "audit.jsonl")}
	r.cp = startLoopCP(t, path, dir, r.auditPath, scraper)
	r.gw = e2etest.StartGateway(t, "gw-1", r.cp.xds, nil)
	scraper.SetTargets([]metricsource.Target{{Name: "gateway-edge", URL: "http://" + r.gw.Admin + "/stats/prometheus"}})
	conn, err := grpc.NewClient(r.gw.WaitLive(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	r.client = pb.NewGRPCInferenceServiceClient(conn)
	return r
}

// TestGatewayCanaryPromotedOnEnvoySignals rolls out a healthy v2 judged on
// the gateway's envoy_cluster_* series: it is promoted through every step,
// the gateway's own counters agree with what its client saw per version,
// and the gateway then sends every request to v2.
func TestGatewayCanaryPromotedOnEnvoySignals(t *testing.T) {
	wasm := e2etest.WasmDir(t)
	repo := e2etest.ModelRepo(t)
	v1 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1", ModelDir: repo})
	v2 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v2", ModelDir: repo})
	r := startGatewayRollout(t, wasm, v1.GRPCAddr, v2.GRPCAddr)
	tr := sendThroughGateway(t, r.client)

	shares := r.followSteps(t)
	tr.Stop()
	got, failed := tr.Counts()
	// While each step lasted, the gateway gave v2 the step's share.
	const tolerance = 10.0 // points; the step's first requests may still follow the previous weights
	for _, s := range shares {
		t.Logf("step %d%%: v2 took %.1f%% of %d requests through the gateway", s.weight, s.share, s.requests)
		if s.requests < 100 || math.Abs(s.share-float64(s.weight)) > tolerance {
			t.Errorf("at step %d%% v2 took %.1f%% of %d requests, want %d%% ± %.0f of at least 100", s.weight, s.share, s.requests, s.weight, tolerance)
		}
	}
	if len(shares) != 3 {
		t.Errorf("measured steps %+v, want 5, 25 and 50", shares)
	}
	names, evs := rolloutDecisions(t, r.auditPath)
	var steps []string
	for _, d := range names {
		if !strings.HasPrefix(d, "hold@") {
			steps = append(steps, d)
		}
	}
	if want := "start@5 advance@25 advance@50 advance@100 promote@100"; strings.Join(steps, " ") != want {
		t.Errorf("decisions %v, want %s", names, want)
	}
	t.Logf("through the gateway: %v, %d failed; decisions %v; promoted %v after the start",
		got, failed, names, evs[len(evs)-1].Time.Sub(evs[0].Time))
	if failed != 0 || got["fraud-v2"] == 0 {
		t.Errorf("through the gateway %v with %d failures: want v2 to take a share of the traffic and nothing to fail", got, failed)
	}
	// The numbers the rollout was judged on are the gateway's own counts:
	// the client's answers per version, give or take the one call in
	// flight when the sender stopped (the gateway counts it, the client
	// sees it cancelled).
	var total float64
	for _, v := range []string{"v1", "v2"} {
		series := fmt.Sprintf(`envoy_cluster_upstream_rq_total{envoy_cluster_name="fraud.%s"}`, v)
		n := r.gw.Metric(t, series)
		if d := n - float64(got["fraud-"+v]); d < 0 || d > 1 {
			t.Errorf("%s = %v, the client counted %d answers of fraud-%s", series, n, got["fraud-"+v], v)
		}
		total += n
	}
	if d := total - float64(got["fraud-v1"]+got["fraud-v2"]); d < 0 || d > 1 {
		t.Errorf("the gateway counted %v requests, the client %d answers", total, got["fraud-v1"]+got["fraud-v2"])
	}
	if after := e2etest.Counts(t, r.client, "fraud", 100); after["fraud-v2"] != 100 {
		t.Errorf("after the promotion the gateway sent %v, want fraud-v2 only", after)
	}
}

// stepShare is v2's share of the gateway's fraud requests while the
// rollout's weight was weight.
type stepShare struct {
	weight   uint32
	share    float64
	requests int
}

// followSteps polls the rollout until it is promoted and measures, from
// the gateway's own counters, v2's share of the requests of each step
// below 100.
func (r *gatewayRollout) followSteps(t *testing.T) []stepShare {
	t.Helper()
	read := func() (float64, float64) {
		return r.gw.Metric(t, `envoy_cluster_upstream_rq_total{envoy_cluster_name="fraud.v1"}`),
			r.gw.Metric(t, `envoy_cluster_upstream_rq_total{envoy_cluster_name="fraud.v2"}`)
	}
	var out []stepShare
	var weight uint32
	var v1, v2 float64
	deadline := time.Now().Add(loopLimit)
	for {
		st := r.cp.status(t)
		if len(st.Rollouts) == 1 && st.Rollouts[0].Weight != weight {
			n1, n2 := read()
			if weight > 0 && weight < 100 {
				d1, d2 := n1-v1, n2-v2
				out = append(out, stepShare{weight: weight, share: 100 * d2 / max(d1+d2, 1), requests: int(d1 + d2)})
			}
			weight, v1, v2 = st.Rollouts[0].Weight, n1, n2
		}
		if len(st.Rollouts) == 1 {
			switch st.Rollouts[0].Phase {
			case "promoted":
				return out
			case "progressing":
			default:
				t.Fatalf("the rollout ended %s: %+v", st.Rollouts[0].Phase, st.Rollouts[0])
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout not promoted within %v; status %+v", loopLimit, st)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a bounded wait
	}
}

// TestGatewayFailingCanaryRolledBackOnEnvoySignals rolls out a v2 whose
// every answer is HTTP 503: the gateway counts them in
// envoy_cluster_upstream_rq_xx{envoy_response_code_class="5"}, the first
// judgement with enough requests rolls the canary back, and the gateway's
// traffic returns to v1.
func TestGatewayFailingCanaryRolledBackOnEnvoySignals(t *testing.T) {
	wasm := e2etest.WasmDir(t)
	v1 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1", ModelDir: e2etest.ModelRepo(t)})
	v2Addr, v2Hits := unavailable(t)
	r := startGatewayRollout(t, wasm, v1.GRPCAddr, v2Addr)
	tr := sendThroughGateway(t, r.client)

	st := r.cp.waitRollout(t, "failed")
	tr.Stop()
	got, failed := tr.Counts()
	names, evs := rolloutDecisions(t, r.auditPath)
	// A judgement may hold while the canary has had too few requests to be
	// judged (a slow machine, or the race detector, sends fewer); the first
	// judgement with enough of them must roll back, and nothing advances.
	last := len(names) - 1
	if len(names) < 2 || names[0] != "start@5" || names[last] != "rollback@0" {
		t.Fatalf("decisions %v, want start@5, holds for too few requests, then rollback@0", names)
	}
	for i := 1; i < last; i++ {
		if names[i] != "hold@5" || !strings.HasPrefix(evs[i].Reason, "too few requests") {
			t.Fatalf("decision %d of %v is %s (%s); only holds for too few requests may come before the rollback", i, names, names[i], evs[i].Reason)
		}
	}
	// v2 fails from its first request: the rollback is the first judgement
	// with enough requests, one step interval after the one before it
	// (plus a tick).
	took := evs[last].Time.Sub(evs[last-1].Time)
	t.Logf("rolled back %v after the step began (interval %v): %s; %v; through the gateway %v, %d failed (v2 got %d)",
		took, loopStep, evs[last].Reason, evs[last].Details, got, failed, v2Hits.Load())
	if took > 2*loopStep {
		t.Errorf("rolled back %v after the breach, want within one interval of the judgement being due", took)
	}
	if failed == 0 || v2Hits.Load() == 0 {
		t.Error("the failing version failed no request through the gateway: the test does not test a failing canary")
	}
	if n := r.gw.Metric(t, `envoy_cluster_upstream_rq_xx{envoy_response_code_class="5",envoy_cluster_name="fraud.v2"}`); n == 0 {
		t.Error("the gateway counted no 5xx of fraud.v2")
	}
	if w := st.Routes[0].Split; len(w) != 2 || w[0].Effective != 100 || w[1].Effective != 0 {
		t.Errorf("effective split after rollback %+v, want v1 100, v2 0", w)
	}
	waitOnly(t, r.client, "fraud-v1")
	if after := e2etest.Counts(t, r.client, "fraud", 100); after["fraud-v1"] != 100 {
		t.Errorf("after the rollback the gateway sent %v, want fraud-v1 only", after)
	}
}

// waitOnly calls fraud through c until 20 calls in a row are answered by
// backend (calls that fail, as the canary's do, break the run), bounded.
func waitOnly(t *testing.T, c pb.GRPCInferenceServiceClient, backend string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-maestro-model", "fraud")
	for run := 0; run < 20; {
		var hdr metadata.MD
		_, err := c.ModelInfer(ctx, e2etest.InferRequest("fraud"), grpc.Header(&hdr))
		if ctx.Err() != nil {
			t.Fatalf("%s never took all of fraud's traffic within %v", backend, waitLimit)
		}
		if n := hdr.Get(server.ServerHeader); err == nil && len(n) == 1 && n[0] == backend {
			run++
		} else {
			run = 0
		}
	}
}

// unavailable starts an h2c server answering every request with HTTP 503,
// and returns its address and the count of requests it answered.
func unavailable(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), &hits
}
