// Package observability tests what an operator's Prometheus sees of a
// running mesh: a real Prometheus server scrapes the inference servers and
// the control plane started by `maestro up`'s code, and the series it
// stores must carry the values the test caused and be documented in
// docs/metrics.md.
package observability

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds"

	"github.com/maestro-ml/maestro/cmd/maestro/internal/localmesh"
	"github.com/maestro-ml/maestro/cmd/maestro/internal/localmesh/meshtest"
	"github.com/maestro-ml/maestro/controlplane/bootstrap"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/internal/promtest"
)

// startMesh runs the mesh of policy and returns where it listens.
func startMesh(t *testing.T) localmesh.Started {
	t.Helper()
	dir := t.TempDir()
	ports := meshtest.FreePorts(t, 2)
	path := filepath.Join(dir, "policy.yaml")
	meshtest.Fraud{Name: "obs", CADir: filepath.Join(dir, "ca"), V1Port: ports[0], V2Port: ports[1], V1Weight: 50}.Write(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan localmesh.Started, 1)
	done := make(chan error, 1)
	go func() {
		done <- localmesh.Run(ctx, localmesh.Config{Dir: dir, Policy: path,
			XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
			OnReady: func(s localmesh.Started) { ready <- s }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("mesh: %v", err)
		}
	})
	select {
	case s := <-ready:
		return s
	case err := <-done:
		t.Fatalf("mesh did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("mesh not ready within 30s")
	}
	return localmesh.Started{}
}

func fraudRequest(input string) *pb.ModelInferRequest {
	return &pb.ModelInferRequest{ModelName: "fraud", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: input, Datatype: "FP32", Shape: []int64{1, 30},
		Contents: &pb.InferTensorContents{Fp32Contents: make([]float32, 30)},
	}}}
}

// docSection returns the yaml block of docs/metrics.md that starts with
// first, without the fence.
func docSection(t *testing.T, doc, first string) string {
	t.Helper()
	i := strings.Index(doc, "```yaml\n"+first)
	if i < 0 {
		t.Fatalf("docs/metrics.md has no yaml block starting with %q", first)
	}
	block := doc[i+len("```yaml\n"):]
	end := strings.Index(block, "```")
	if end < 0 {
		t.Fatalf("docs/metrics.md: the yaml block starting with %q is not closed", first)
	}
	return block[:end]
}

// envoyStats serves what an older Envoy's /stats/prometheus shows of the
// slo filter: its stats under the envoy_wasmcustom_ prefix.
func envoyStats(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE envoy_wasmcustom_maestro_slo_requests_total counter\n"+
			"envoy_wasmcustom_maestro_slo_requests_total{route=\"fraud\",model=\"fraud\"} 7\n")
	})}
	go func() { _ = srv.Serve(l) }() // http.ErrServerClosed once Close runs
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func TestPrometheusSeesTheMeshAsDocumented(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a mesh and a Prometheus server")
	}
	docBytes, err := os.ReadFile("../../../../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(docBytes)
	mesh := startMesh(t)
	var v1 localmesh.StartedServer
	targets := []promtest.Target{
		{Job: "controlplane", Addr: mesh.Admin},
		{Job: "envoy", Addr: envoyStats(t), Path: "/stats/prometheus",
			MetricRelabelConfigs: strings.TrimPrefix(docSection(t, doc, "metric_relabel_configs:"), "metric_relabel_configs:\n")},
	}
	for _, s := range mesh.Servers {
		targets = append(targets, promtest.Target{Job: s.Name, Addr: s.HTTP})
		if s.Name == "fraud-v1" {
			v1 = s
		}
	}
	prom := promtest.Start(t, targets...)

	// A known workload straight at fraud v1: good and bad requests.
	conn, err := grpc.NewClient(v1.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewGRPCInferenceServiceClient(conn)
	const good, bad = 37, 5
	for range good {
		if _, err := client.ModelInfer(t.Context(), fraudRequest("features")); err != nil {
			t.Fatal(err)
		}
	}
	for range bad {
		if _, err := client.ModelInfer(t.Context(), fraudRequest("nope")); err == nil {
			t.Fatal("a request with an unknown input succeeded")
		}
	}
	// One call through a proxyless client makes the control plane count a
	// node, its streams and its ACKs.
	boot, err := bootstrap.GRPC(bootstrap.Config{NodeID: "obs-client", Role: model.RoleProxyless, XDSAddr: mesh.XDS})
	if err != nil {
		t.Fatal(err)
	}
	resolver, err := xds.NewXDSResolverWithConfigForTesting(boot)
	if err != nil {
		t.Fatal(err)
	}
	xconn, err := grpc.NewClient("xds:///fraud", grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer xconn.Close()
	var md metadata.MD
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := pb.NewGRPCInferenceServiceClient(xconn).ModelInfer(ctx, fraudRequest("features"), grpc.Header(&md)); err != nil {
		t.Fatalf("call through xds: %v", err)
	}
	viaXDS := 0
	if got := md.Get("x-maestro-server"); len(got) == 1 && got[0] == "fraud-v1" {
		viaXDS = 1
	}

	equals := func(want float64) func([]promtest.Sample) bool {
		return func(s []promtest.Sample) bool { return len(s) == 1 && s[0].Value == want }
	}
	const wait = 30 * time.Second
	prom.WaitFor(t, `sum(maestro_inference_requests_total{job="fraud-v1",model="fraud"})`, wait, equals(float64(good+bad+viaXDS)))
	prom.WaitFor(t, `sum(maestro_inference_request_failures_total{job="fraud-v1",model="fraud",code="InvalidArgument"})`, wait, equals(bad))
	prom.WaitFor(t, `sum(maestro_inference_request_duration_seconds_count{job="fraud-v1",model="fraud",version="1"})`, wait,
		func(s []promtest.Sample) bool { return len(s) == 1 && s[0].Value >= good })
	prom.WaitFor(t, `maestro_controlplane_connected_nodes{job="controlplane"}`, wait, equals(1))
	prom.WaitFor(t, `sum(maestro_controlplane_acks_total{job="controlplane",type="listener"})`, wait,
		func(s []promtest.Sample) bool { return len(s) == 1 && s[0].Value >= 1 })
	// At least the initial load: the certificate follower's first refresh,
	// right after it, counts as an applied (unchanged) load when it runs
	// after the initial one, which depends on scheduling.
	prom.WaitFor(t, `sum(maestro_controlplane_reloads_total{job="controlplane",result="applied"})`, wait,
		func(s []promtest.Sample) bool { return len(s) == 1 && s[0].Value >= 1 && s[0].Value <= 2 })
	// The documented relabelling maps an older Envoy's names onto the scheme.
	prom.WaitFor(t, `maestro_slo_requests_total{job="envoy",route="fraud",model="fraud"}`, wait, equals(7))

	names, err := prom.Query(t.Context(), `group by (__name__) ({__name__=~"maestro_.+"})`)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 10 {
		t.Fatalf("only %d maestro series names scraped: %v", len(names), names)
	}
	suffix := regexp.MustCompile(`_(bucket|sum|count)$`)
	for _, n := range names {
		name := n.Labels["__name__"]
		if !strings.Contains(doc, "`"+name+"`") && !strings.Contains(doc, "`"+suffix.ReplaceAllString(name, "")+"`") {
			t.Errorf("%s is exported but not documented in docs/metrics.md", name)
		}
	}
}
