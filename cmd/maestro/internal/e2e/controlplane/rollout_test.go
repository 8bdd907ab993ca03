package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/controlplane/metricsource"
	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/server"
	"github.com/maestro-ml/maestro/internal/e2etest"
	"github.com/maestro-ml/maestro/internal/promtest"
)

// stepInterval is the rollouts' step: the shortest the policy allows, so
// the loop ticks every 250ms.
const stepInterval = time.Second

// rolloutLimit bounds a whole rollout: four steps of one second, plus
// holds while a 5% step gathers its requests on a loaded machine.
const rolloutLimit = 90 * time.Second

// canaryAnalysis is the rollouts' analysis block unless a test needs
// another.
const canaryAnalysis = "{maxErrorRate: 5}"

// canaryPolicy rolls fraud v2 out over v1 for proxyless clients of
// xds:///fraud, judged on the inference servers' own series.
func canaryPolicy(v1, v2 uint32) string { return canaryPolicyAnalysis(v1, v2, canaryAnalysis) }

// canaryPolicyAnalysis is canaryPolicy with the rollout's analysis block.
func canaryPolicyAnalysis(v1, v2 uint32, analysis string) string {
	return fmt.Sprintf(`apiVersion: maestro.dev/v1alpha1
kind: Mesh
metadata: {name: e2e}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud, namespace: ml}
spec:
  protocol: grpc
  versions:
    - {name: v1, endpoints: [{address: 127.0.0.1, port: %d}]}
    - {name: v2, endpoints: [{address: 127.0.0.1, port: %d}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud, namespace: ml}
spec:
  service: fraud
  split: [{version: v1, weight: 100}]
  rollout:
    version: v2
    steps: [5, 25, 50, 100]
    stepInterval: 1s
    minRequests: 20
    analysis: %s
`, v1, v2, analysis)
}

// Faults of the canary version.
const (
	healthy = ""
	// broken expects five features where clients send four, so every
	// request it gets fails.
	broken = "broken"
	// slow takes 100ms over every prediction.
	slow = "slow"
)

// canaryServers starts fraud v1 (repository version 1) and v2 (repository
// version 2, the one the mesh's v2 is judged on), v2 with fault.
func canaryServers(t *testing.T, fault string) (v1, v2 *inferencetest.Server) {
	t.Helper()
	d1, d2 := t.TempDir(), t.TempDir()
	inferencetest.WriteModel(t, d1, inferencetest.TestModel{Name: "fraud", Biases: []float64{0}})
	bad := inferencetest.TestModel{Name: "fraud", Biases: []float64{0, 1}}
	opts := inferencetest.Options{Name: "fraud-v2", ModelDir: d2}
	switch fault {
	case broken:
		bad.Features = 5
	case slow:
		opts.Registry = inferencetest.Registry()
		load := opts.Registry[inferencetest.RuntimeName]
		opts.Registry[inferencetest.RuntimeName] = func(ctx context.Context, spec runtime.Spec) (runtime.Model, error) {
			m, err := load(ctx, spec)
			return slowModel{m}, err
		}
	}
	inferencetest.WriteModel(t, d2, bad)
	v1 = inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1", ModelDir: d1})
	v2 = inferencetest.Start(t, opts)
	return v1, v2
}

// slowModel answers as its model does, 100ms later.
type slowModel struct{ runtime.Model }

func (m slowModel) Predict(ctx context.Context, in []runtime.Tensor) ([]runtime.Tensor, error) {
	select {
	case <-time.After(100 * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return m.Model.Predict(ctx, in)
}

// startLoopPlane runs a control plane (replica id) serving path with its
// rollouts driven from stateDir, scraping the servers' /metrics, auditing
// to auditPath.
func startLoopPlane(t *testing.T, id, path, stateDir, auditPath string, servers ...*inferencetest.Server) *e2etest.Plane {
	t.Helper()
	return startLoopPlaneTargets(t, id, path, stateDir, auditPath, targetsOf(servers...))
}

// targetsOf are the servers' /metrics endpoints.
func targetsOf(servers ...*inferencetest.Server) []metricsource.Target {
	var targets []metricsource.Target
	for _, s := range servers {
		targets = append(targets, metricsource.Target{Name: s.Name, URL: "http://" + s.HTTPAddr + "/metrics"})
	}
	return targets
}

// startLoopPlaneTargets is startLoopPlane scraping targets.
func startLoopPlaneTargets(t *testing.T, id, path, stateDir, auditPath string, targets []metricsource.Target) *e2etest.Plane {
	t.Helper()
	return startLoopPlaneConfig(t, path, auditPath, closedloop.Config{
		StateDir: stateDir, Identity: id, Targets: targets, Signals: closedloop.SignalsInference, LeaseTTL: 5 * time.Second,
	})
}

// startLoopPlaneConfig runs a plaintext control plane serving path with
// the closed loop cfg, auditing to auditPath.
func startLoopPlaneConfig(t *testing.T, path, auditPath string, cfg closedloop.Config) *e2etest.Plane {
	t.Helper()
	cfg.Audit = e2etest.AuditFile(t, auditPath)
	loop, err := closedloop.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e2etest.Start(t, e2etest.Config{Path: path, Limit: waitLimit,
		Certs: controlplane.CertConfig{DryRun: true, Plaintext: true},
		Server: func(pc *controlplane.Config, _ *controlplane.Certificates) {
			pc.Insecure, pc.InsecureSecrets, pc.Loop = true, true, loop
		},
	})
}

// canary is a rollout of fraud v2 over v1 under way: the policy written at
// path, one control plane driving it and auditing to auditPath, a
// proxyless client and traffic through it.
type canary struct {
	path, policy, auditPath string
	plane                   *e2etest.Plane
	client                  pb.GRPCInferenceServiceClient
	traffic                 *e2etest.Traffic
}

// startCanary starts the servers (v2 with fault), the policy with the
// analysis block given, the control plane, the client and the traffic.
func startCanary(t *testing.T, fault, analysis string) *canary {
	t.Helper()
	v1, v2 := canaryServers(t, fault)
	dir := t.TempDir()
	c := &canary{path: filepath.Join(dir, "mesh.yaml"), auditPath: filepath.Join(dir, "audit.jsonl"),
		policy: canaryPolicyAnalysis(port(t, v1.GRPCAddr), port(t, v2.GRPCAddr), analysis)}
	write(t, c.path, c.policy)
	c.plane = startLoopPlane(t, "cp-1", c.path, dir, c.auditPath, v1, v2)
	c.client = xdsClient(t, c.plane.Addrs.XDS.String(), "client-1")
	c.traffic = sendTraffic(t, c.client)
	return c
}

// sendTraffic keeps calling ModelInfer through c until stopped, so every
// step has requests to be judged on.
func sendTraffic(t *testing.T, c pb.GRPCInferenceServiceClient) *e2etest.Traffic {
	t.Helper()
	req := &pb.ModelInferRequest{ModelName: "fraud", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{1, 4},
		Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}},
	}}}
	return e2etest.SendTraffic(t, func(ctx context.Context) (string, error) {
		var hdr metadata.MD
		_, err := c.ModelInfer(ctx, req, grpc.WaitForReady(true), grpc.Header(&hdr))
		if n := hdr.Get(server.ServerHeader); err == nil && len(n) == 1 {
			return n[0], nil
		}
		return "", err
	})
}

// decisions are the rollout decisions of the audit trail at path, as
// "advance@25".
func decisions(t *testing.T, path string) []string {
	t.Helper()
	names, _ := e2etest.RolloutDecisions(t, path)
	return names
}

func TestCanaryPromotedThroughEveryStep(t *testing.T) {
	c := startCanary(t, healthy, canaryAnalysis)
	p, client, tr, auditPath := c.plane, c.client, c.traffic, c.auditPath

	p.WaitRollout(t, "promotion", rolloutLimit, e2etest.Phase("promoted"))
	tr.Stop()
	// Holds (a 5% step short of requests on a slow machine) may come
	// between; the advances are every step in order.
	var steps []string
	for _, d := range decisions(t, auditPath) {
		if !strings.HasPrefix(d, "hold@") {
			steps = append(steps, d)
		}
	}
	if want := "start@5 advance@25 advance@50 advance@100 promote@100"; strings.Join(steps, " ") != want {
		t.Errorf("decisions %v, want %s", steps, want)
	}
	checkSplit(t, split(t, client, rpcs), map[string]float64{"fraud-v2": 100})
}

func TestFailingCanaryRolledBack(t *testing.T) {
	c := startCanary(t, broken, canaryAnalysis)
	p, client, tr, auditPath := c.plane, c.client, c.traffic, c.auditPath

	st := p.WaitRollout(t, "rollback", rolloutLimit, e2etest.Phase("failed"))
	tr.Stop()
	if w := st.Routes[0].Split; len(w) != 2 || w[0].Effective != 100 || w[1].Effective != 0 {
		t.Errorf("effective split after rollback %+v, want v1 100, v2 0", w)
	}
	names, evs := e2etest.RolloutDecisions(t, auditPath)
	if got := strings.Join(names, " "); got != "start@5 rollback@0" {
		t.Fatalf("decisions %q, want the first judgement to roll back", got)
	}
	// v2 fails from its first request, at the step's start: the rollback
	// is the first judgement, one step interval later (plus the loop's
	// tick, a quarter of it).
	took := evs[1].Time.Sub(evs[0].Time)
	t.Logf("rolled back %v after the step began (interval %v): %s; %v", took, stepInterval, evs[1].Reason, evs[1].Details)
	if took > 2*stepInterval {
		t.Errorf("rolled back %v after the breach, want within one interval of the judgement being due", took)
	}
	_, failed := tr.Counts()
	if failed == 0 {
		t.Error("the broken version failed no request: the test does not test a failing canary")
	}
	// Every proxyless client's split is back on the stable version.
	waitShare(t, client, "fraud-v1", 99)
	checkSplit(t, split(t, client, rpcs), map[string]float64{"fraud-v1": 100})
}

func TestRolloutResumesAfterRestart(t *testing.T) {
	v1, v2 := canaryServers(t, healthy)
	dir := t.TempDir()
	path := filepath.Join(dir, "mesh.yaml")
	write(t, path, canaryPolicy(port(t, v1.GRPCAddr), port(t, v2.GRPCAddr)))
	first := startLoopPlane(t, "cp-1", path, dir, filepath.Join(dir, "audit-1.jsonl"), v1, v2)
	tr := sendTraffic(t, xdsClient(t, first.Addrs.XDS.String(), "client-1"))
	mid := first.WaitRollout(t, "the second step", rolloutLimit, func(st closedloop.Status) bool { return st.Rollouts[0].Step >= 1 })
	first.Stop()
	tr.Stop()

	auditPath := filepath.Join(dir, "audit-2.jsonl")
	second := startLoopPlane(t, "cp-1", path, dir, auditPath, v1, v2)
	client := xdsClient(t, second.Addrs.XDS.String(), "client-2")
	tr = sendTraffic(t, client)
	resumed := second.WaitRollout(t, "resumption", rolloutLimit, func(closedloop.Status) bool { return true })
	if r := resumed.Rollouts[0]; r.Step < mid.Rollouts[0].Step || !r.Started.Equal(mid.Rollouts[0].Started) {
		t.Fatalf("after the restart the rollout is at step %d started %v, want step >= %d of the rollout started %v",
			r.Step, r.Started, mid.Rollouts[0].Step, mid.Rollouts[0].Started)
	}
	second.WaitRollout(t, "promotion", rolloutLimit, e2etest.Phase("promoted"))
	tr.Stop()
	for _, d := range decisions(t, auditPath) {
		if strings.HasPrefix(d, "start@") || strings.HasPrefix(d, "restart@") {
			t.Errorf("the restarted control plane started the rollout again: %s", d)
		}
	}
	checkSplit(t, split(t, client, rpcs), map[string]float64{"fraud-v2": 100})
}

// TestOneReplicaDrivesTheRollout runs two control planes on one state
// directory: one holds the lease and decides, the other follows the state
// file, and both serve the same weights to their clients.
func TestOneReplicaDrivesTheRollout(t *testing.T) {
	v1, v2 := canaryServers(t, healthy)
	dir := t.TempDir()
	path := filepath.Join(dir, "mesh.yaml")
	write(t, path, canaryPolicy(port(t, v1.GRPCAddr), port(t, v2.GRPCAddr)))
	auditA, auditB := filepath.Join(dir, "audit-a.jsonl"), filepath.Join(dir, "audit-b.jsonl")
	a := startLoopPlane(t, "cp-a", path, dir, auditA, v1, v2)
	b := startLoopPlane(t, "cp-b", path, dir, auditB, v1, v2)
	clientA := xdsClient(t, a.Addrs.XDS.String(), "client-a")
	clientB := xdsClient(t, b.Addrs.XDS.String(), "client-b")
	trA, trB := sendTraffic(t, clientA), sendTraffic(t, clientB)
	promoted := e2etest.Phase("promoted")
	stA := a.WaitRollout(t, "promotion on a", rolloutLimit, promoted)
	stB := b.WaitRollout(t, "promotion on b", rolloutLimit, promoted)
	trA.Stop()
	trB.Stop()
	if stA.Leader == stB.Leader || stA.Holder != stB.Holder {
		t.Fatalf("leaders a=%v b=%v, holders %q %q: want exactly one, seen by both", stA.Leader, stB.Leader, stA.Holder, stB.Holder)
	}
	leader, follower := auditA, auditB
	if stB.Leader {
		leader, follower = auditB, auditA
	}
	if n := len(decisions(t, follower)); n != 0 {
		t.Errorf("the follower recorded %d decisions", n)
	}
	if n := len(decisions(t, leader)); n < 5 {
		t.Errorf("the leader recorded %d decisions, want start, three advances and the promotion", n)
	}
	checkSplit(t, split(t, clientA, rpcs), map[string]float64{"fraud-v2": 100})
	checkSplit(t, split(t, clientB, rpcs), map[string]float64{"fraud-v2": 100})
}

// TestMetricSourceDownHolds scrapes one target that does not answer: the
// rollout holds at its first step, never promoted blind, and says why.
func TestMetricSourceDownHolds(t *testing.T) {
	v1, v2 := canaryServers(t, healthy)
	dir := t.TempDir()
	path, auditPath := filepath.Join(dir, "mesh.yaml"), filepath.Join(dir, "audit.jsonl")
	write(t, path, canaryPolicy(port(t, v1.GRPCAddr), port(t, v2.GRPCAddr)))
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL + "/metrics"
	dead.Close()
	targets := append(targetsOf(v1, v2), metricsource.Target{Name: "gateway-down", URL: deadURL})
	p := startLoopPlaneTargets(t, "cp-1", path, dir, auditPath, targets)
	tr := sendTraffic(t, xdsClient(t, p.Addrs.XDS.String(), "client-1"))
	st := p.WaitRollout(t, "a hold", rolloutLimit, func(st closedloop.Status) bool { return st.Rollouts[0].LastDecision == "hold" })
	tr.Stop()
	r := st.Rollouts[0]
	if r.Step != 0 || r.Weight != 5 || r.Phase != "progressing" ||
		!strings.Contains(r.LastReason, "metric source unavailable, not promoting blind") || !strings.Contains(r.LastReason, "gateway-down") {
		t.Errorf("rollout %+v: want held at the first step, naming the target down", r)
	}
	for _, d := range decisions(t, auditPath) {
		if !strings.HasPrefix(d, "start@") && !strings.HasPrefix(d, "hold@") {
			t.Errorf("decision %s with a metric source down", d)
		}
	}
}

// TestRouteEditRestartsRollout edits the route in mid-rollout: the control
// plane reloads, and the rollout starts again from its first step.
func TestRouteEditRestartsRollout(t *testing.T) {
	c := startCanary(t, healthy, canaryAnalysis)
	p, tr, auditPath := c.plane, c.traffic, c.auditPath
	first := p.WaitRollout(t, "the second step", rolloutLimit, func(st closedloop.Status) bool { return st.Rollouts[0].Step >= 1 })
	write(t, c.path, strings.Replace(c.policy, "minRequests: 20", "minRequests: 21", 1))
	st := p.WaitRollout(t, "a restart", rolloutLimit, func(st closedloop.Status) bool { return st.Rollouts[0].LastDecision == "restart" })
	tr.Stop()
	if r := st.Rollouts[0]; r.Step != 0 || r.Weight != 5 || !r.Started.After(first.Rollouts[0].Started) {
		t.Errorf("after the edit %+v: want a new rollout at its first step", r)
	}
	if got := decisions(t, auditPath); !slices.Contains(got, "restart@5") {
		t.Errorf("decisions %v lack the restart", got)
	}
}

// TestSlowCanaryRolledBack rolls out a version whose every answer waits
// 100ms against a 50ms p99 objective: it is rolled back on latency at the
// first judgement with enough requests.
func TestSlowCanaryRolledBack(t *testing.T) {
	c := startCanary(t, slow, "{maxErrorRate: 5, latency: [{percentile: 99, threshold: 50ms}]}")
	p, client, tr, auditPath := c.plane, c.client, c.traffic, c.auditPath
	p.WaitRollout(t, "rollback", rolloutLimit, e2etest.Phase("failed"))
	tr.Stop()
	// A slow version gets few requests from one sender, so the step may
	// hold for too few requests first; once it has enough, the first
	// judgement rolls it back.
	names, evs := e2etest.RolloutDecisions(t, auditPath)
	var kept []string
	for _, d := range names {
		if d != "hold@5" {
			kept = append(kept, d)
		}
	}
	if got := strings.Join(kept, " "); got != "start@5 rollback@0" {
		t.Fatalf("decisions %v, want a start, holds, and a rollback", names)
	}
	last := evs[len(evs)-1]
	for _, ev := range evs[1 : len(evs)-1] {
		if !strings.Contains(ev.Reason, "too few requests") {
			t.Errorf("hold for %q, want only holds for too few requests", ev.Reason)
		}
	}
	t.Logf("rolled back %v after the step began, after %d holds: %s; %v", last.Time.Sub(evs[0].Time), len(evs)-2, last.Reason, last.Details)
	if !strings.Contains(last.Reason, "p99") {
		t.Errorf("rollback reason %q, want the latency objective", last.Reason)
	}
	waitShare(t, client, "fraud-v1", 99)
	checkSplit(t, split(t, client, rpcs), map[string]float64{"fraud-v1": 100})
}

// TestCanaryOnRealPrometheus judges the rollout on a real Prometheus
// scraping the inference servers, through the client --prometheus uses: a
// healthy canary is promoted through every step.
func TestCanaryOnRealPrometheus(t *testing.T) {
	v1, v2 := canaryServers(t, healthy)
	prom := promtest.Start(t, promtest.Target{Job: "fraud-v1", Addr: v1.HTTPAddr}, promtest.Target{Job: "fraud-v2", Addr: v2.HTTPAddr})
	src, err := metricsource.NewPrometheus(prom.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path, auditPath := filepath.Join(dir, "mesh.yaml"), filepath.Join(dir, "audit.jsonl")
	write(t, path, canaryPolicy(port(t, v1.GRPCAddr), port(t, v2.GRPCAddr)))
	p := startLoopPlaneConfig(t, path, auditPath, closedloop.Config{StateDir: dir, Identity: "cp-1", Source: src, Signals: closedloop.SignalsInference})
	client := xdsClient(t, p.Addrs.XDS.String(), "client-1")
	tr := sendTraffic(t, client)
	p.WaitRollout(t, "promotion", rolloutLimit, e2etest.Phase("promoted"))
	tr.Stop()
	var steps []string
	names, evs := e2etest.RolloutDecisions(t, auditPath)
	for i, d := range names {
		if !strings.HasPrefix(d, "hold@") {
			steps = append(steps, d)
		} else if !strings.Contains(evs[i].Reason, "too few requests") {
			t.Errorf("hold for %q: want only holds while Prometheus has too few samples", evs[i].Reason)
		}
	}
	if want := "start@5 advance@25 advance@50 advance@100 promote@100"; strings.Join(steps, " ") != want {
		t.Errorf("decisions %v, want %s", names, want)
	}
	t.Logf("decisions on Prometheus: %v, promoted %v after the start", names, evs[len(evs)-1].Time.Sub(evs[0].Time))
	checkSplit(t, split(t, client, rpcs), map[string]float64{"fraud-v2": 100})
}
