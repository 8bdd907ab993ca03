package e2etest

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/server"
)

// ModelRepo writes models fraud and churn for inferencetest servers.
func ModelRepo(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "fraud"})
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "churn"})
	return dir
}

// InferRequest is a one-row ModelInfer request for model.
func InferRequest(model string) *pb.ModelInferRequest {
	return &pb.ModelInferRequest{ModelName: model, Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{1, 4},
		Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}}}
}

// Counts makes n ModelInfer calls for model through c, naming the model in
// the x-maestro-model header as a gateway route matches it, and counts the
// answers per server; a failed call fails the test.
func Counts(t testing.TB, c pb.GRPCInferenceServiceClient, model string, n int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitLimit)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-maestro-model", model)
	out := map[string]int{}
	for range n {
		var hdr metadata.MD
		if _, err := c.ModelInfer(ctx, InferRequest(model), grpc.Header(&hdr)); err != nil {
			t.Fatalf("ModelInfer %s through the gateway: %v", model, err)
		}
		out[hdr.Get(server.ServerHeader)[0]]++
	}
	return out
}
