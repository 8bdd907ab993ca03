package cost_test

import (
	"context"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane/cost"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/internal/promtest"
)

const promMesh = `apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: reco}
spec:
  versions:
    - {name: v1, endpoints: [{address: 127.0.0.1, port: 9001}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: busy}
spec:
  service: reco
  match: {model: busy}
`

func inferRows(ctx context.Context, c pb.GRPCInferenceServiceClient, model string, rows int) error {
	_, err := c.ModelInfer(ctx, &pb.ModelInferRequest{
		ModelName: model,
		Inputs: []*pb.ModelInferRequest_InferInputTensor{{
			Name: "x", Datatype: "FP32", Shape: []int64{int64(rows), 4},
			Contents: &pb.InferTensorContents{Fp32Contents: make([]float32, rows*4)},
		}},
	})
	return err
}

// TestPrometheusSource runs a real Prometheus (Debian's package) scraping a
// real inference server whose target labels name its service version, and
// checks that the report built from the query API agrees with the server's
// own counters, attributes the route, and finds the idle model.
func TestPrometheusSource(t *testing.T) {
	dir := t.TempDir()
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "busy", MemoryBytes: 1 << 30})
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "idle", MemoryBytes: 512 << 20})
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: dir, Name: "prom"})
	client := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Both loaded, and busy's counters exist, before the first scrape: the
	// window starts from a known baseline of 1 prediction.
	if err := inferRows(ctx, client, "busy", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Server.Repository().Get(ctx, "idle", ""); err != nil {
		t.Fatal(err)
	}
	prom := promtest.Start(t, promtest.Target{Job: "inference", Addr: srv.HTTPAddr, MetricRelabelConfigs: `
- target_label: maestro_service
  replacement: reco
- target_label: maestro_service_version
  replacement: v1
`})
	const counter = `maestro_inference_model_predictions_total{model="busy"}`
	prom.WaitFor(t, counter, time.Minute, func(s []promtest.Sample) bool { return len(s) == 1 && s[0].Value == 1 })
	hc := &http.Client{Timeout: 30 * time.Second}
	target, err := cost.ParseTarget("http://" + srv.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	before, err := cost.Scrape(ctx, hc, target)
	if err != nil {
		t.Fatal(err)
	}
	const requests, rows = 50, 2
	for range requests {
		if err := inferRows(ctx, client, "busy", rows); err != nil {
			t.Fatal(err)
		}
	}
	after, err := cost.Scrape(ctx, hc, target)
	if err != nil {
		t.Fatal(err)
	}
	// Flat for 4 s: every scrape since the workload is in, so increase()
	// extrapolates over a span long against one scrape interval.
	prom.WaitFor(t, "min_over_time("+counter+"[4s])", time.Minute, func(s []promtest.Sample) bool {
		return len(s) == 1 && s[0].Value == 1+requests*rows
	})
	// Evaluated at the latest scrape: increase() then has nothing to
	// extrapolate at the window's end (it would add up to one scrape
	// interval's worth, 10% of this short series).
	last := prom.WaitFor(t, "timestamp("+counter+")", time.Minute, func(s []promtest.Sample) bool { return len(s) == 1 })
	const window = 2 * time.Minute
	end := time.UnixMilli(int64(last[0].Value * 1000))
	got, servers, err := cost.QueryPrometheus(ctx, hc, prom.URL, window, end)
	if err != nil {
		t.Fatal(err)
	}
	mesh, err := policy.Parse("mesh.yaml", []byte(promMesh))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := cost.Build(got, window, cost.Options{Prices: cost.DefaultPrices(), Mesh: mesh, Servers: servers})
	if err != nil {
		t.Fatal(err)
	}
	models := map[string]cost.ModelCost{}
	for _, m := range rep.Models {
		models[m.Model] = m
	}
	busy := models["busy"]
	if busy.Service != "reco" || busy.ServiceVersion != "v1" || busy.Replicas != 1 {
		t.Errorf("busy row %+v: want service reco/v1 on 1 replica (from the target labels)", busy)
	}
	mv := cost.MV{Model: "busy", Version: "1"}
	direct := (after.Models[mv].CPUSeconds - before.Models[mv].CPUSeconds) / (after.Models[mv].Predictions - before.Models[mv].Predictions)
	t.Logf("from Prometheus: %.2f predictions, %.3g core-s, %.1f GB-s; server's counters: %d predictions, %.3g core-s per prediction",
		busy.Predictions, busy.CoreSeconds, busy.GBSeconds, requests*rows, direct)
	// increase() extrapolates a little at the window's edges.
	if want := float64(requests * rows); math.Abs(busy.Predictions-want)/want > 0.10 {
		t.Errorf("busy predictions %.1f from Prometheus, want %v within 10%%", busy.Predictions, want)
	}
	if fromProm := busy.CoreSeconds / busy.Predictions; math.Abs(fromProm-direct)/direct > 0.10 {
		t.Errorf("core-s per prediction %.3g from Prometheus, %.3g from the server's counters", fromProm, direct)
	}
	// Loaded at every scrape of the window: its size times the window.
	if want := window.Seconds(); math.Abs(busy.GBSeconds-want)/want > 0.01 {
		t.Errorf("busy GB-seconds %.2f, want %.0f (1 GiB held through the window)", busy.GBSeconds, want)
	}
	// The server shares this test's process, whose CPU is far more than the
	// cheap test model's.
	if len(rep.Servers) != 1 || rep.Servers[0].ModelCoreSeconds != busy.CoreSeconds || rep.Servers[0].ProcessCoreSeconds <= busy.CoreSeconds {
		t.Errorf("servers %+v: want one whose process CPU exceeds the model's %.3g core-s", rep.Servers, busy.CoreSeconds)
	}
	if len(rep.Routes) != 1 || rep.Routes[0].Predictions != busy.Predictions || rep.Routes[0].CoreSeconds != busy.CoreSeconds {
		t.Errorf("routes %+v: want route busy carrying busy's usage", rep.Routes)
	}
	var idle []string
	for _, r := range rep.Recommendations {
		if r.Kind == "idle" {
			idle = append(idle, r.Subject+": "+r.Message)
		}
	}
	if len(idle) != 1 || !strings.HasPrefix(idle[0], "idle v1 on reco/v1:") || !strings.Contains(idle[0], "0.500 GB held") {
		t.Errorf("idle recommendations %q, want one for idle v1 holding 0.5 GB", idle)
	}
}
