package gateway_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/internal/e2etest"
)

// TestWasmFiltersThroughGateway runs the real fanout and slo modules from
// ECDS in the gateway: shadows reach the shadow server through the
// gateway's pools, the ensemble answers, and the filters' stats appear on
// /stats/prometheus under the names the SLO rules read.
func TestWasmFiltersThroughGateway(t *testing.T) {
	dir := e2etest.WasmDir(t)
	repo := e2etest.ModelRepo(t)
	inferencetest.WriteModel(t, repo, inferencetest.TestModel{Name: "fraud-logistic"})
	v1 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1", ModelDir: repo})
	v2 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v2", ModelDir: repo})
	logistic := inferencetest.Start(t, inferencetest.Options{Name: "fraud-logistic", ModelDir: repo})
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	e2etest.ReplaceFile(t, path, e2etest.FilterPolicy(dir, v1.GRPCAddr, v2.GRPCAddr, logistic.GRPCAddr))
	cp := e2etest.StartPlaintext(t, path, "127.0.0.1:0")
	gw := e2etest.StartGateway(t, "gw-1", cp.XDS, nil)
	addr := gw.WaitLive(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := pb.NewGRPCInferenceServiceClient(conn)

	const n = 20
	if got := e2etest.Counts(t, client, "fraud", n); got["fraud-v1"] != n {
		t.Fatalf("fraud answered by %v, want fraud-v1", got)
	}
	gw.WaitMetric(t, `maestro_fanout_shadow_sent_total{route="fraud",shadow="fraud_logistic"}`, n)
	// The shadow calls go through the gateway's pool for the cluster.
	gw.WaitMetric(t, `envoy_cluster_upstream_rq_total{envoy_cluster_name="fraud.logistic"}`, n)
	gw.WaitMetric(t, `maestro_fanout_shadow_compared_total{route="fraud",shadow="fraud_logistic"}`, n)
	if v := gw.Metric(t, `maestro_slo_requests_total{route="fraud",model="fraud"}`); v != n {
		t.Errorf("maestro_slo_requests_total = %v, want %d\n%s", v, n, grep(gw.Scrape(t), "maestro_"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-maestro-model", "fraud-ensemble")
	resp, err := client.ModelInfer(ctx, e2etest.InferRequest("fraud-ensemble"))
	if err != nil {
		t.Fatalf("ensemble through the gateway: %v", err)
	}
	if len(resp.GetOutputs()) == 0 {
		t.Fatalf("ensemble answered no outputs: %v", resp)
	}
	if v := gw.Metric(t, `maestro_fanout_requests_total{route="fraud-ensemble"}`); v != 1 {
		t.Errorf("maestro_fanout_requests_total = %v, want 1\n%s", v, grep(gw.Scrape(t), "maestro_fanout"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
