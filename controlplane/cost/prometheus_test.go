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

// features is the width of the busy model's rows.
const features = 250_000

func inferRows(ctx context.Context, c pb.GRPCInferenceServiceClient, model string, rows int) error {
	_, err := c.ModelInfer(ctx, &pb.ModelInferRequest{
		ModelName: model,
		Inputs: []*pb.ModelInferRequest_InferInputTensor{{
			Name: "x", Datatype: "FP32", Shape: []int64{int64(rows), features},
			Contents: &pb.InferTensorContents{Fp32Contents: make([]float32, rows*features)},
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
	// Wide rows make each 2-row batch cost about 350 us of CPU, above the
	// meter's 200 us sampling threshold, so every batch is measured rather
	// than a sample: the server's counter then grows with each request, as
	// Prometheus must see it.
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "busy", Features: features, MemoryBytes: 1 << 30})
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "idle", MemoryBytes: 512 << 20})
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: dir, Name: "prom"})
	client := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const requests, rows = 50, 2
	// Both loaded, and busy's counters exist, before the first scrape: the
	// window starts from a known baseline of one request.
	if err := inferRows(ctx, client, "busy", rows); err != nil {
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
	prom.WaitFor(t, counter, time.Minute, func(s []promtest.Sample) bool { return len(s) == 1 && s[0].Value == rows })
	hc := &http.Client{Timeout: 30 * time.Second}
	target, err := cost.ParseTarget("http://" + srv.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
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
		return len(s) == 1 && s[0].Value == (1+requests)*rows
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
	// The window covers the counters' whole life, so Prometheus's
	// increase() must match their final values on the server (increase()
	// extrapolates a little at the window's start).
	final := after.Models[cost.MV{Model: "busy", Version: "1"}]
	t.Logf("from Prometheus: %.2f predictions, %.3g core-s, %.1f GB-s; server's counters: %v predictions, %.3g core-s",
		busy.Predictions, busy.CoreSeconds, busy.GBSeconds, final.Predictions, final.CPUSeconds)
	if final.Predictions != (1+requests)*rows {
		t.Fatalf("server counted %v predictions, want %d", final.Predictions, (1+requests)*rows)
	}
	for _, c := range []struct {
		what      string
		got, want float64
	}{{"predictions", busy.Predictions, final.Predictions}, {"core-seconds", busy.CoreSeconds, final.CPUSeconds}} {
		if (c.want == 0 && c.got != 0) || (c.want != 0 && math.Abs(c.got-c.want)/c.want > 0.05) {
			t.Errorf("%s: %.4g from Prometheus, %.4g on the server", c.what, c.got, c.want)
		}
	}
	// Loaded at every scrape of the window: its size times the window.
	if want := window.Seconds(); math.Abs(busy.GBSeconds-want)/want > 0.01 {
		t.Errorf("busy GB-seconds %.2f, want %.0f (1 GiB held through the window)", busy.GBSeconds, want)
	}
	// The server shares this test's process, which also decodes the wide
	// requests and runs the client: its CPU exceeds the model's.
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
