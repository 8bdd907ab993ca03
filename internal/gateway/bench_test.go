package gateway_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
)

// benchCallers is the number of concurrent callers the figure is
// taken at.
const benchCallers = 64

func sloPolicy(dir, v1 string) string {
	return fmt.Sprintf(`apiVersion: maestro.dev/v1alpha1
kind: Mesh
metadata:
  name: bench
spec:
  mtls:
    mode: DISABLE
  filters:
    fanout:
      path: %[1]s/fanout.wasm
    slo:
      path: %[1]s/slo.wasm
---
apiVersion: maestro.dev/v1alpha1
kind: Service
metadata:
  name: fraud
  namespace: ml
spec:
  protocol: grpc
  versions:
    - name: v1
      endpoints: [{address: 127.0.0.1, port: %[2]s}]
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
  timeout: 2s
  slo:
    availability: 99.9
    latency:
      - {percentile: 99, threshold: 250ms}
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
  routes: [fraud]
`, dir, port(v1))
}

// run makes n unary ModelInfer calls with benchCallers concurrent callers
// on one client and returns the sorted latencies and the elapsed time.
func run(b *testing.B, c pb.GRPCInferenceServiceClient, n int) ([]time.Duration, time.Duration) {
	b.Helper()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-maestro-model", "fraud")
	req := inferRequest("fraud")
	lat := make([][]time.Duration, benchCallers)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := range benchCallers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				if _, err := c.ModelInfer(ctx, req); err != nil {
					failed.Store(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := failed.Load().(error); ok {
		b.Fatalf("ModelInfer: %v", err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return all, elapsed
}

// BenchmarkUnaryGRPCGatewayVsDirect measures unary OIP gRPC through the
// gateway (with the slo filter from ECDS) against the same inference
// server called directly, same client code, 64 callers, in one run.
func BenchmarkUnaryGRPCGatewayVsDirect(b *testing.B) {
	dir := wasmDir(b)
	repo := b.TempDir()
	inferencetest.WriteModel(b, repo, inferencetest.TestModel{Name: "fraud"})
	srv := inferencetest.Start(b, inferencetest.Options{Name: "fraud-v1", ModelDir: repo})
	path := filepath.Join(b.TempDir(), "mesh.yaml")
	replaceFile(b, path, sloPolicy(dir, srv.GRPCAddr))
	cp := startPlane(b, path, "127.0.0.1:0")
	addr := startGateway(b, "gw-bench", cp.xds, nil).waitLive(b)

	dial := func(addr string) pb.GRPCInferenceServiceClient {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		return pb.NewGRPCInferenceServiceClient(conn)
	}
	direct, through := dial(srv.GRPCAddr), dial(addr)
	// Warm both paths (connections, VMs) outside the measurement.
	run(b, direct, 2*benchCallers)
	run(b, through, 2*benchCallers)

	b.ResetTimer()
	n := max(b.N, benchCallers)
	dl, de := run(b, direct, n)
	gl, ge := run(b, through, n)
	b.StopTimer()
	p50 := func(l []time.Duration) float64 { return float64(l[len(l)/2].Microseconds()) }
	rps := func(l []time.Duration, e time.Duration) float64 { return float64(len(l)) / e.Seconds() }
	b.ReportMetric(p50(dl), "direct-p50-µs")
	b.ReportMetric(p50(gl), "gateway-p50-µs")
	b.ReportMetric(p50(gl)/p50(dl), "p50-ratio")
	p99 := func(l []time.Duration) float64 { return float64(l[len(l)*99/100].Microseconds()) }
	b.ReportMetric(p99(dl), "direct-p99-µs")
	b.ReportMetric(p99(gl), "gateway-p99-µs")
	b.ReportMetric(rps(dl, de), "direct-req/s")
	b.ReportMetric(rps(gl, ge), "gateway-req/s")
	b.ReportMetric(rps(gl, ge)/rps(dl, de), "throughput-ratio")
}
