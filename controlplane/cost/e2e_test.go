package cost_test

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/maestro-ml/maestro/controlplane/cost"
	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/runtime/embedding"
)

// heavyModel writes a top-10 recommender over items x 64 dims into a fresh
// repository: each row scores every item, so a row costs milliseconds of
// CPU and evaluation dominates the server's (and its client's) own work.
func heavyModel(t *testing.T, items int) string {
	t.Helper()
	const dim, users = 64, 64
	rng := rand.New(rand.NewPCG(1, 2))
	tab := &embedding.Table{Dim: dim, UserIDs: make([]int64, users), ItemIDs: make([]int64, items),
		Users: make([]float64, users*dim), Items: make([]float64, items*dim)}
	for i := range tab.UserIDs {
		tab.UserIDs[i] = int64(i)
	}
	for i := range tab.ItemIDs {
		tab.ItemIDs[i] = int64(i)
	}
	for _, vs := range [][]float64{tab.Users, tab.Items} {
		for i := range vs {
			vs[i] = rng.NormFloat64()
		}
	}
	data, err := tab.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := `name: reco
runtime: embedding
max_batch_size: 16
inputs:
  - {name: user_id, datatype: INT64, shape: [1]}
outputs:
  - {name: item_ids, datatype: INT64, shape: [10]}
  - {name: scores, datatype: FP32, shape: [10]}
dynamic_batching:
  max_queue_delay_microseconds: 500
parameters:
  k: "10"
  model_file: embeddings.bin
`
	if err := os.MkdirAll(filepath.Join(dir, "reco", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "reco", "config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "reco", "1", "embeddings.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// processCPU is this process's CPU time (user + system, all threads).
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func infer(ctx context.Context, c pb.GRPCInferenceServiceClient, users []int64) error {
	_, err := c.ModelInfer(ctx, &pb.ModelInferRequest{
		ModelName: "reco",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{{
			Name: "user_id", Datatype: "INT64", Shape: []int64{int64(len(users)), 1},
			Contents: &pb.InferTensorContents{Int64Contents: users},
		}},
	})
	return err
}

// TestReportMatchesProcessCPU runs a fixed workload through a real
// inference server in this process and checks the report's core-seconds
// per million predictions against the process's own CPU time over the
// same span, measured independently with getrusage. Client, server and
// model share the process, so the model's share must dominate: the rest
// (gRPC on both sides, the batcher, garbage collection) is what the 10%
// tolerance allows. CPU time does not depend on how loaded the machine is.
func TestReportMatchesProcessCPU(t *testing.T) {
	const (
		callers  = 4
		requests = 20 // per caller
		rows     = 8  // per request
	)
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: heavyModel(t, 100_000), Name: "cost"})
	client := srv.Client(t)
	target, err := cost.ParseTarget("http://" + srv.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Load the model (and warm the connection) outside the measured span:
	// loading is no prediction's cost.
	if err := infer(ctx, client, []int64{0}); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	before, err := cost.Scrape(ctx, hc, target)
	if err != nil {
		t.Fatal(err)
	}
	cpu0 := processCPU(t)
	g, gctx := errgroup.WithContext(ctx)
	for c := range callers {
		g.Go(func() error {
			for i := range requests {
				users := make([]int64, rows)
				for j := range users {
					users[j] = int64((c*requests + i + j) % 64)
				}
				if err := infer(gctx, client, users); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	cpu1 := processCPU(t)
	after, err := cost.Scrape(ctx, hc, target)
	if err != nil {
		t.Fatal(err)
	}
	samples := []cost.Sample{before, after}
	rep, err := cost.Build(cost.Integrate(target, samples), after.At.Sub(before.At), cost.Options{
		Prices: cost.DefaultPrices(), Servers: []cost.Server{cost.ServerCPU(target, samples)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Models) != 1 {
		t.Fatalf("report has %d model rows, want 1: %+v", len(rep.Models), rep.Models)
	}
	m := rep.Models[0]
	const predictions = callers * requests * rows
	if m.Model != "reco" || m.Version != "1" || m.Predictions != predictions {
		t.Fatalf("report row %s v%s with %v predictions, want reco v1 with %d", m.Model, m.Version, m.Predictions, predictions)
	}
	got := m.CoreSecondsPerMillion()
	want := (cpu1 - cpu0).Seconds() / predictions * 1e6
	t.Logf("report: %.1f core-s per 1M predictions; process: %.1f (model share %.1f%%); $%.4f per 1M",
		got, want, 100*got/want, m.PerMillion())
	if math.Abs(got-want)/want > 0.10 {
		t.Errorf("report says %.1f core-s per 1M predictions, process CPU says %.1f: off by %.1f%% (> 10%%)",
			got, want, 100*math.Abs(got-want)/want)
	}
	// The server's own process_cpu_seconds_total (whole process, like
	// getrusage, but read by the report from /metrics in 10 ms ticks).
	if srv := rep.Servers; len(srv) != 1 || srv[0].ModelCoreSeconds != m.CoreSeconds ||
		math.Abs(srv[0].ProcessCoreSeconds-(cpu1-cpu0).Seconds())/(cpu1-cpu0).Seconds() > 0.10 {
		t.Errorf("servers %+v: want one with the model's %.3f core-s and about %.3f process core-s", srv, m.CoreSeconds, (cpu1 - cpu0).Seconds())
	}
	if m.GBSeconds <= 0 || m.Dollars <= 0 {
		t.Errorf("GB-seconds %v, dollars %v: want both positive for a loaded, busy model", m.GBSeconds, m.Dollars)
	}
}
