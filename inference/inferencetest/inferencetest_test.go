package inferencetest_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/server"
)

func TestStartServesModelsAndNamesItself(t *testing.T) {
	dir := t.TempDir()
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "m", Features: 3, Biases: []float64{10, 20}})
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: dir, Name: "backend-a"})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var hdr metadata.MD
	resp, err := srv.Client(t).ModelInfer(ctx, &pb.ModelInferRequest{
		ModelName: "m",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{{
			Name: "x", Datatype: "FP32", Shape: []int64{2, 3},
			Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4, 5, 6}},
		}},
	}, grpc.Header(&hdr))
	if err != nil {
		t.Fatalf("ModelInfer: %v", err)
	}
	// The latest version (2, bias 20) answers by default.
	if got := resp.GetModelVersion(); got != "2" {
		t.Errorf("version = %q, want 2", got)
	}
	if got, want := resp.GetOutputs()[0].GetContents().GetFp32Contents(), []float32{26, 35}; !equal(got, want) {
		t.Errorf("y = %v, want %v", got, want)
	}
	if got := resp.GetParameters()[server.ServerParameter].GetStringParam(); got != "backend-a" {
		t.Errorf("parameter %s = %q, want backend-a", server.ServerParameter, got)
	}
	if got := hdr.Get(server.ServerHeader); len(got) != 1 || got[0] != "backend-a" {
		t.Errorf("header %s = %v, want [backend-a]", server.ServerHeader, got)
	}

	res, err := http.Get("http://" + srv.HTTPAddr + "/v2/health/ready")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get(server.ServerHeader) != "backend-a" {
		t.Errorf("ready: %d %q", res.StatusCode, res.Header.Get(server.ServerHeader))
	}
}

func TestStopDrainsAndRefusesNewConnections(t *testing.T) {
	dir := t.TempDir()
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "m"})
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: dir})
	srv.Stop()
	srv.Stop() // idempotent
	client := &http.Client{Timeout: 5 * time.Second}
	if _, err := client.Get("http://" + srv.HTTPAddr + "/v2/health/live"); err == nil {
		t.Fatal("server still answers after Stop")
	}
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDefaultServesTheDemoModels(t *testing.T) {
	srv := inferencetest.Start(t, inferencetest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range []string{"fraud", "churn", "recommendations", "fraud-logistic"} {
		resp, err := srv.Client(t).ModelReady(ctx, &pb.ModelReadyRequest{Name: m})
		if err != nil || !resp.GetReady() {
			t.Errorf("demo model %s: ready=%v err=%v", m, resp.GetReady(), err)
		}
	}
}
