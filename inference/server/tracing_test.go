package server_test

import (
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/metadata"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

func TestTraceContextFlowsIntoModelSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tracing := &telemetry.Tracing{Provider: tp, Propagator: propagation.TraceContext{}, Shutdown: tp.Shutdown}
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: repo(t), Tracing: tracing})

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if _, err := srv.Client(t).ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "m",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input("x", []int64{1, 3}, 1, 2, 3)}}); err != nil {
		t.Fatal(err)
	}
	srv.Stop() // ends every span
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = s
	}
	rpc, predict := byName["inference.GRPCInferenceService/ModelInfer"], byName["inference.predict"]
	if rpc == nil || predict == nil {
		t.Fatalf("spans %v: want the RPC's and inference.predict", keys(byName))
	}
	if got := rpc.SpanContext().TraceID().String(); got != traceID {
		t.Errorf("RPC span in trace %s, want the caller's %s", got, traceID)
	}
	if predict.Parent().SpanID() != rpc.SpanContext().SpanID() {
		t.Errorf("inference.predict is not a child of the RPC span")
	}
	attrs := map[string]string{}
	for _, a := range predict.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	if attrs["inference.model"] != "m" || attrs["inference.version"] != "2" || attrs["inference.rows"] != "1" {
		t.Errorf("predict attributes %v", attrs)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
