package gateway_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/server"
	"github.com/maestro-ml/maestro/internal/e2etest"
)

// meshPolicy routes model fraud to v1/v2 by weight and model churn to
// churn's only version, through gateway edge. Routes that select a model
// over gRPC get the fanout filter (it names the model for standard OIP
// clients), so the policy says where the filters are built (wasmDir).
func meshPolicy(wasm, fraudV1, fraudV2, churn string, w1, w2 int) string {
	return wasmMesh("gw", wasm) + fmt.Sprintf(`apiVersion: maestro.dev/v1alpha1
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
`, port(fraudV1), port(fraudV2), port(churn), w1, w2)
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// replaceFile writes content atomically so the control plane never reloads
// a half-written policy.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// plane is a real control plane serving policy files.
type plane struct {
	xds     string
	reloads chan error
	stop    func()
}

func startPlane(t testing.TB, path, xdsAddr string) *plane {
	t.Helper()
	p := &plane{reloads: make(chan error, 10)}
	cp := e2etest.Start(t, e2etest.Config{Path: path, Limit: waitLimit,
		Certs: controlplane.CertConfig{DryRun: true, Plaintext: true},
		Server: func(pc *controlplane.Config, _ *controlplane.Certificates) {
			pc.Insecure, pc.InsecureSecrets, pc.XDSAddr = true, true, xdsAddr
			pc.OnReload = func(_ string, err error) { p.reloads <- err }
		},
	})
	p.xds, p.stop = cp.Addrs.XDS.String(), cp.Stop
	return p
}

func (p *plane) edit(t testing.TB, path, content string) {
	t.Helper()
	replaceFile(t, path, content)
	select {
	case err := <-p.reloads:
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("no reload after edit")
	}
}

// testRepo writes models fraud and churn for inferencetest servers.
func testRepo(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "fraud"})
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "churn"})
	return dir
}

func inferRequest(model string) *pb.ModelInferRequest {
	return &pb.ModelInferRequest{ModelName: model, Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{1, 4},
		Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}}}
}

// counts makes n ModelInfer calls for model through c and counts answers
// per server.
func counts(t testing.TB, c pb.GRPCInferenceServiceClient, model string, n int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-maestro-model", model)
	out := map[string]int{}
	for range n {
		var hdr metadata.MD
		if _, err := c.ModelInfer(ctx, inferRequest(model), grpc.Header(&hdr)); err != nil {
			t.Fatalf("ModelInfer %s through the gateway: %v", model, err)
		}
		out[hdr.Get(server.ServerHeader)[0]]++
	}
	return out
}

func TestGatewayWithControlPlane(t *testing.T) {
	wasm := wasmDir(t)
	repo := testRepo(t)
	v1 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1", ModelDir: repo})
	v2 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v2", ModelDir: repo})
	churn := inferencetest.Start(t, inferencetest.Options{Name: "churn-v1", ModelDir: repo})
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	replaceFile(t, path, meshPolicy(wasm, v1.GRPCAddr, v2.GRPCAddr, churn.GRPCAddr, 80, 20))
	cp := startPlane(t, path, "127.0.0.1:0")
	gw := startGateway(t, "gw-1", cp.xds, nil)
	addr := gw.waitLive(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := pb.NewGRPCInferenceServiceClient(conn)

	const n, tolerance = 500, 6.0 // percent points; 4.9 sigma at 80/20 over 500 calls
	t.Run("gRPC reaches the model's cluster with the split's weights", func(t *testing.T) {
		if got := counts(t, client, "churn", 20); got["churn-v1"] != 20 {
			t.Fatalf("churn answered by %v, want churn-v1 only", got)
		}
		got := counts(t, client, "fraud", n)
		share := 100 * float64(got["fraud-v1"]) / n
		if math.Abs(share-80) > tolerance || got["fraud-v1"]+got["fraud-v2"] != n {
			t.Fatalf("fraud split %v, want 80/20 ± %.0f points", got, tolerance)
		}
		if v := gw.metric(t, `envoy_cluster_upstream_rq_total{envoy_cluster_name="fraud.v1"}`); v != float64(got["fraud-v1"]) {
			t.Errorf("envoy_cluster_upstream_rq_total for fraud.v1 = %v, want %d", v, got["fraud-v1"])
		}
	})
	t.Run("a policy edit moves the traffic", func(t *testing.T) {
		cp.edit(t, path, meshPolicy(wasm, v1.GRPCAddr, v2.GRPCAddr, churn.GRPCAddr, 0, 100))
		waitAll(t, client, "fraud", "fraud-v2")
	})
	t.Run("last good config survives the control plane and the client reconnects", func(t *testing.T) {
		xds := cp.xds
		cp.stop()
		waitMetric(t, gw, "envoy_control_plane_connected_state", 0)
		if got := counts(t, client, "fraud", 20); got["fraud-v2"] != 20 {
			t.Fatalf("without a control plane fraud answered by %v, want fraud-v2 only", got)
		}
		replaceFile(t, path, meshPolicy(wasm, v1.GRPCAddr, v2.GRPCAddr, churn.GRPCAddr, 100, 0))
		startPlane(t, path, xds)
		waitMetric(t, gw, "envoy_control_plane_connected_state", 1)
		waitAll(t, client, "fraud", "fraud-v1")
	})
	if ev := gw.waitEventOrNone(resource.RouteType); ev != nil && ev.Err != nil {
		t.Errorf("route config NACKed: %v", ev.Err)
	}
}

// waitAll probes until every answer for model comes from backend.
func waitAll(t testing.TB, c pb.GRPCInferenceServiceClient, model, backend string) {
	t.Helper()
	for range 200 {
		if counts(t, c, model, 10)[backend] == 10 {
			return
		}
	}
	t.Fatalf("%s never took all of %s's traffic", backend, model)
}

func waitMetric(t testing.TB, gw *runningGateway, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for gw.metric(t, series) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s never became %v", series, want)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded
	}
}

// waitEventOrNone returns a pending event of typeURL, if any.
func (rg *runningGateway) waitEventOrNone(typeURL string) *xdsEvent {
	for {
		select {
		case ev := <-rg.events:
			if ev.TypeURL == typeURL && ev.Err != nil {
				return &xdsEvent{Err: ev.Err}
			}
		default:
			return nil
		}
	}
}

type xdsEvent struct{ Err error }

var _ = strconv.Itoa
