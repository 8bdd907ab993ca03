package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// wasmDir builds (or reuses, with MAESTRO_WASM_DIR) the fanout and slo
// filters into a directory, outside any test deadline.
func wasmDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"fanout", "slo"} {
		b := wasmtest.Build(t, "github.com/maestro-ml/maestro/wasmfilter/"+f+"/cmd")
		if err := os.WriteFile(filepath.Join(dir, f+".wasm"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func filterPolicy(dir, v1, v2, logistic string) string {
	return wasmMesh("gw", dir) + fmt.Sprintf(`apiVersion: maestro.dev/v1alpha1
kind: Service
metadata:
  name: fraud
  namespace: ml
spec:
  protocol: grpc
  versions:
    - name: v1
      endpoints: [{address: 127.0.0.1, port: %[1]s}]
    - name: v2
      endpoints: [{address: 127.0.0.1, port: %[2]s}]
    - name: logistic
      endpoints: [{address: 127.0.0.1, port: %[3]s}]
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata:
  name: fraud
  namespace: ml
spec:
  service: fraud
  match:
    model: fraud
  split:
    - {version: v1, weight: 100}
  shadow:
    version: logistic
    percentage: 100
    compare: true
    model: fraud-logistic
  timeout: 2s
  slo:
    availability: 99.9
    latency:
      - {percentile: 99, threshold: 250ms}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata:
  name: fraud-ensemble
  namespace: ml
spec:
  service: fraud
  match:
    model: fraud-ensemble
  ensemble:
    strategy: weighted_mean
    members:
      - {version: v1, model: fraud, weight: 1}
      - {version: v2, model: fraud, weight: 1}
    quorum: 2
    timeout: 1s
  timeout: 2s
---
apiVersion: maestro.dev/v1alpha1
kind: Gateway
metadata:
  name: edge
  namespace: ml
spec:
  port: 18080
  protocol: grpc
  hosts: ["*"]
  routes: [fraud, fraud-ensemble]
`, port(v1), port(v2), port(logistic))
}

// TestWasmFiltersThroughGateway runs the real fanout and slo modules from
// ECDS in the gateway: shadows reach the shadow server through the
// gateway's pools, the ensemble answers, and the filters' stats appear on
// /stats/prometheus under the names the SLO rules read.
func TestWasmFiltersThroughGateway(t *testing.T) {
	dir := wasmDir(t)
	repo := testRepo(t)
	inferencetest.WriteModel(t, repo, inferencetest.TestModel{Name: "fraud-logistic"})
	v1 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1", ModelDir: repo})
	v2 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v2", ModelDir: repo})
	logistic := inferencetest.Start(t, inferencetest.Options{Name: "fraud-logistic", ModelDir: repo})
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	replaceFile(t, path, filterPolicy(dir, v1.GRPCAddr, v2.GRPCAddr, logistic.GRPCAddr))
	cp := startPlane(t, path, "127.0.0.1:0")
	gw := startGateway(t, "gw-1", cp.xds, nil)
	addr := gw.waitLive(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := pb.NewGRPCInferenceServiceClient(conn)

	const n = 20
	if got := counts(t, client, "fraud", n); got["fraud-v1"] != n {
		t.Fatalf("fraud answered by %v, want fraud-v1", got)
	}
	waitMetric(t, gw, `maestro_fanout_shadow_sent_total{route="fraud",shadow="fraud_logistic"}`, n)
	// The shadow calls go through the gateway's pool for the cluster.
	waitMetric(t, gw, `envoy_cluster_upstream_rq_total{envoy_cluster_name="fraud.logistic"}`, n)
	waitMetric(t, gw, `maestro_fanout_shadow_compared_total{route="fraud",shadow="fraud_logistic"}`, n)
	if v := gw.metric(t, `maestro_slo_requests_total{route="fraud",model="fraud"}`); v != n {
		t.Errorf("maestro_slo_requests_total = %v, want %d\n%s", v, n, grep(gw.scrape(t), "maestro_"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-maestro-model", "fraud-ensemble")
	resp, err := client.ModelInfer(ctx, inferRequest("fraud-ensemble"))
	if err != nil {
		t.Fatalf("ensemble through the gateway: %v", err)
	}
	if len(resp.GetOutputs()) == 0 {
		t.Fatalf("ensemble answered no outputs: %v", resp)
	}
	if v := gw.metric(t, `maestro_fanout_requests_total{route="fraud-ensemble"}`); v != 1 {
		t.Errorf("maestro_fanout_requests_total = %v, want 1\n%s", v, grep(gw.scrape(t), "maestro_fanout"))
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
