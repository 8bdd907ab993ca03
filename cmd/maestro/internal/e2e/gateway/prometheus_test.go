package gateway_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"gopkg.in/yaml.v3"

	"github.com/maestro-ml/maestro/controlplane/slo"
	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/internal/e2etest"
	"github.com/maestro-ml/maestro/internal/promtest"
)

// TestSLORulesOnGatewayStats has a real Prometheus scrape the gateway's
// /stats/prometheus while the slo filter meters real traffic, then
// evaluates the recording rule `maestro slo rules` writes for the route:
// the error ratio must be the share of calls that failed.
func TestSLORulesOnGatewayStats(t *testing.T) {
	dir := e2etest.WasmDir(t)
	repo := e2etest.ModelRepo(t)
	v1 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1", ModelDir: repo})
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	e2etest.ReplaceFile(t, path, e2etest.SLOPolicy(dir, v1.GRPCAddr))
	cp := e2etest.StartPlaintext(t, path, "127.0.0.1:0")
	gw := e2etest.StartGateway(t, "gw-1", cp.XDS, nil)
	addr := gw.WaitLive(t)
	prom := promtest.Start(t, promtest.Target{Job: "gateway", Addr: gw.Admin, Path: "/stats/prometheus"})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := pb.NewGRPCInferenceServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()
	requests := `maestro_slo_requests_total{route="fraud",model="fraud"}`
	// One call creates the series; Prometheus must scrape them before the
	// rest so that rate() sees the whole increase.
	e2etest.Counts(t, client, "fraud", 1)
	waitProm(ctx, t, prom, requests, 1)
	const good, bad = 29, 10
	e2etest.Counts(t, client, "fraud", good)
	v1.Stop()
	callCtx := metadata.AppendToOutgoingContext(ctx, "x-maestro-model", "fraud")
	for range bad {
		if _, err := client.ModelInfer(callCtx, e2etest.InferRequest("fraud")); err == nil {
			t.Fatal("a call to a stopped server succeeded")
		}
	}
	waitProm(ctx, t, prom, requests, 1+good+bad)
	waitProm(ctx, t, prom, `maestro_slo_errors_total{route="fraud",model="fraud"}`, bad)

	rules, err := slo.Rules([]slo.Objective{{Name: "fraud-availability", Route: "fraud", Model: "fraud", Kind: slo.Availability, Target: 0.999}}, slo.DefaultMetrics())
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []struct{ Record, Expr string }
		}
	}
	if err := yaml.Unmarshal(rules, &file); err != nil {
		t.Fatal(err)
	}
	expr := ""
	for _, r := range file.Groups[0].Rules {
		if r.Record == slo.RecordName(5*time.Minute) {
			expr = r.Expr
		}
	}
	if expr == "" {
		t.Fatalf("no %s rule in\n%s", slo.RecordName(5*time.Minute), rules)
	}
	samples, err := prom.Query(ctx, expr)
	if err != nil {
		t.Fatal(err)
	}
	want := float64(bad) / float64(good+bad) // the increase after the first scrape
	if len(samples) != 1 || math.Abs(samples[0].Value-want) > 0.01 {
		t.Fatalf("%s = %v, want %.3f", expr, samples, want)
	}
}

// waitProm waits until Prometheus has scraped series with value want.
func waitProm(ctx context.Context, t *testing.T, prom *promtest.Server, series string, want float64) {
	t.Helper()
	for {
		s, err := prom.Query(ctx, series)
		if err == nil && len(s) == 1 && s[0].Value == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Prometheus never saw %s = %v (last %v, %v)", series, want, s, err)
		case <-time.After(100 * time.Millisecond): // polling a condition, bounded by ctx
		}
	}
}
