package tracing

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/runtime/builtin"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// discard is an exporter that drops spans: the cost measured is the
// instrumentation and the batch processor, not a collector.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkTracingOverhead measures one fraud ModelInfer over gRPC against
// a server with tracing off and one with every span sampled and exported
// (client span included), interleaved in the same loop so that machine
// load hits both alike; on/off is the cost of tracing as a ratio.
func BenchmarkTracingOverhead(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	prop := propagation.TraceContext{}
	tracing := &telemetry.Tracing{Provider: tp, Propagator: prop, Shutdown: tp.Shutdown}

	off := inferencetest.Start(b, inferencetest.Options{Name: "off", Registry: builtin.Registry()}).Client(b)
	onSrv := inferencetest.Start(b, inferencetest.Options{Name: "on", Registry: builtin.Registry(), Tracing: tracing})
	conn, err := grpc.NewClient(onSrv.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop))))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	on := pb.NewGRPCInferenceServiceClient(conn)
	tracer := tp.Tracer("bench")

	ctx := context.Background()
	req := fraudRequest(1)
	var tOff, tOn time.Duration
	calls := 0
	for b.Loop() {
		start := time.Now()
		if _, err := off.ModelInfer(ctx, req); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		sctx, span := tracer.Start(ctx, "client.request")
		_, err := on.ModelInfer(sctx, req)
		span.End()
		if err != nil {
			b.Fatal(err)
		}
		tOff += mid.Sub(start)
		tOn += time.Since(mid)
		calls++
	}
	n := float64(calls)
	b.ReportMetric(float64(tOff.Microseconds())/n, "off-µs/req")
	b.ReportMetric(float64(tOn.Microseconds())/n, "on-µs/req")
	b.ReportMetric(float64(tOn)/float64(tOff), "on/off")
}
