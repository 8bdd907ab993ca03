package gateway_test

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/internal/e2etest"
)

// meshPolicy routes model fraud to v1/v2 by weight and model churn to
// churn's only version, through gateway edge. Routes that select a model
// over gRPC get the fanout filter (it names the model for standard OIP
// clients), so the policy says where the filters are built (e2etest.WasmDir).
func meshPolicy(wasm, fraudV1, fraudV2, churn string, w1, w2 int) string {
	return e2etest.WasmMesh("gw", wasm) + fmt.Sprintf(`apiVersion: maestro.dev/v1alpha1
kind: Service
metadata:
  name: fraud
  namespace: ml
spec:
  protocol: grpc
  versions:
    - name: v1
      endpoints: [{address: 127.0.0.1, port: %s}]
    - name: v2
      endpoints: [{address: 127.0.0.1, port: %s}]
  healthCheck:
    interval: 1s
    timeout: 500ms
  outlierDetection:
    consecutive5xx: 5
    interval: 10s
    baseEjectionTime: 30s
    maxEjectionPercent: 50
---
apiVersion: maestro.dev/v1alpha1
kind: Service
metadata:
  name: churn
  namespace: ml
spec:
  protocol: grpc
  versions:
    - name: v1
      endpoints: [{address: 127.0.0.1, port: %s}]
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
    - {version: v1, weight: %d}
    - {version: v2, weight: %d}
  timeout: 2s
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata:
  name: churn
  namespace: ml
spec:
  service: churn
  match:
    model: churn
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
  routes: [fraud, churn]
`, e2etest.Port(fraudV1), e2etest.Port(fraudV2), e2etest.Port(churn), w1, w2)
}

func TestGatewayWithControlPlane(t *testing.T) {
	wasm := e2etest.WasmDir(t)
	repo := e2etest.ModelRepo(t)
	v1 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1", ModelDir: repo})
	v2 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v2", ModelDir: repo})
	churn := inferencetest.Start(t, inferencetest.Options{Name: "churn-v1", ModelDir: repo})
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	e2etest.ReplaceFile(t, path, meshPolicy(wasm, v1.GRPCAddr, v2.GRPCAddr, churn.GRPCAddr, 80, 20))
	cp := e2etest.StartPlaintext(t, path, "127.0.0.1:0")
	gw := e2etest.StartGateway(t, "gw-1", cp.XDS, nil)
	addr := gw.WaitLive(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := pb.NewGRPCInferenceServiceClient(conn)

	const n, tolerance = 500, 6.0 // percent points; 4.9 sigma at 80/20 over 500 calls
	t.Run("gRPC reaches the model's cluster with the split's weights", func(t *testing.T) {
		if got := e2etest.Counts(t, client, "churn", 20); got["churn-v1"] != 20 {
			t.Fatalf("churn answered by %v, want churn-v1 only", got)
		}
		got := e2etest.Counts(t, client, "fraud", n)
		share := 100 * float64(got["fraud-v1"]) / n
		if math.Abs(share-80) > tolerance || got["fraud-v1"]+got["fraud-v2"] != n {
			t.Fatalf("fraud split %v, want 80/20 ± %.0f points", got, tolerance)
		}
		if v := gw.Metric(t, `envoy_cluster_upstream_rq_total{envoy_cluster_name="fraud.v1"}`); v != float64(got["fraud-v1"]) {
			t.Errorf("envoy_cluster_upstream_rq_total for fraud.v1 = %v, want %d", v, got["fraud-v1"])
		}
	})
	t.Run("a policy edit moves the traffic", func(t *testing.T) {
		cp.Edit(t, path, meshPolicy(wasm, v1.GRPCAddr, v2.GRPCAddr, churn.GRPCAddr, 0, 100))
		waitAll(t, client, "fraud", "fraud-v2")
	})
	t.Run("last good config survives the control plane and the client reconnects", func(t *testing.T) {
		xds := cp.XDS
		cp.Stop()
		gw.WaitMetric(t, "envoy_control_plane_connected_state", 0)
		if got := e2etest.Counts(t, client, "fraud", 20); got["fraud-v2"] != 20 {
			t.Fatalf("without a control plane fraud answered by %v, want fraud-v2 only", got)
		}
		e2etest.ReplaceFile(t, path, meshPolicy(wasm, v1.GRPCAddr, v2.GRPCAddr, churn.GRPCAddr, 100, 0))
		e2etest.StartPlaintext(t, path, xds)
		gw.WaitMetric(t, "envoy_control_plane_connected_state", 1)
		waitAll(t, client, "fraud", "fraud-v1")
	})
	if err := pendingNack(gw, resource.RouteType); err != nil {
		t.Errorf("route config NACKed: %v", err)
	}
}

// waitAll probes until every answer for model comes from backend.
func waitAll(t testing.TB, c pb.GRPCInferenceServiceClient, model, backend string) {
	t.Helper()
	for range 200 {
		if e2etest.Counts(t, c, model, 10)[backend] == 10 {
			return
		}
	}
	t.Fatalf("%s never took all of %s's traffic", backend, model)
}

// pendingNack returns the error of a pending rejected update of typeURL
// among the gateway's xDS events, if any.
func pendingNack(gw *e2etest.Gateway, typeURL string) error {
	for {
		select {
		case ev := <-gw.Events:
			if ev.TypeURL == typeURL && ev.Err != nil {
				return ev.Err
			}
		default:
			return nil
		}
	}
}
