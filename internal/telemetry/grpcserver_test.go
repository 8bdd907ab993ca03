package telemetry_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/internal/telemetry"
)

// answers is a health service whose Check fails with the code named by
// the service asked about ("" answers normally).
type answers struct{ *health.Server }

func (a answers) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if req.GetService() == c.String() && c != codes.OK {
			return nil, status.Error(c, "failed as asked: "+c.String())
		}
	}
	return a.Server.Check(ctx, req)
}

// serveSpans serves answers with the stats handler h makes and returns a
// client and the spans recorded once the server stopped.
func serveSpans(t *testing.T, sampler sdktrace.Sampler, h func(*telemetry.Tracing) []grpc.ServerOption) (healthpb.HealthClient, func() []sdktrace.ReadOnlySpan) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sampler))
	tr := &telemetry.Tracing{Provider: tp, Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}), Shutdown: tp.Shutdown}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(h(tr)...)
	healthpb.RegisterHealthServer(srv, answers{health.NewServer()})
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); srv.Stop() })
	return healthpb.NewHealthClient(conn), func() []sdktrace.ReadOnlySpan {
		conn.Close()
		srv.GracefulStop()
		return rec.Ended()
	}
}

// interceptors installs GRPCServerSpans.
func interceptors(tr *telemetry.Tracing) []grpc.ServerOption {
	u, s := telemetry.GRPCServerSpans(tr)
	return []grpc.ServerOption{grpc.UnaryInterceptor(u), grpc.StreamInterceptor(s)}
}

// spanView is what a span shows a trace backend, with the listener's
// port (which differs between the two servers) left out.
type spanView struct {
	Name, Kind, Status, StatusMsg string
	Trace                         string
	Attrs                         []string
}

func view(s sdktrace.ReadOnlySpan) spanView {
	v := spanView{Name: s.Name(), Kind: s.SpanKind().String(), Status: s.Status().Code.String(), StatusMsg: s.Status().Description}
	if s.Parent().IsValid() {
		v.Trace = s.SpanContext().TraceID().String() + " parent " + s.Parent().SpanID().String()
	}
	for _, a := range s.Attributes() {
		if a.Key == "server.port" {
			continue
		}
		v.Attrs = append(v.Attrs, fmt.Sprintf("%s=%s", a.Key, a.Value.String()))
	}
	slices.Sort(v.Attrs)
	return v
}

// TestGRPCServerSpansMatchOtelgrpc: for the same calls (answered, failed
// with each code, with and without a caller's trace context) the server
// spans of GRPCServerHandler are otelgrpc's: name, kind, parent, status
// and attributes.
func TestGRPCServerSpansMatchOtelgrpc(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	calls := []struct{ service, traceparent string }{{"", ""}, {"", parent}}
	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		calls = append(calls, struct{ service, traceparent string }{c.String(), parent})
	}
	run := func(h func(*telemetry.Tracing) []grpc.ServerOption) []spanView {
		client, spans := serveSpans(t, sdktrace.AlwaysSample(), h)
		for _, c := range calls {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if c.traceparent != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", c.traceparent)
			}
			_, _ = client.Check(ctx, &healthpb.HealthCheckRequest{Service: c.service})
			cancel()
		}
		var out []spanView
		for _, s := range spans() {
			out = append(out, view(s))
		}
		slices.SortFunc(out, compareViews)
		return out
	}
	ours := run(interceptors)
	theirs := run(func(tr *telemetry.Tracing) []grpc.ServerOption {
		return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tr.Provider), otelgrpc.WithPropagators(tr.Propagator)))}
	})
	if len(ours) != len(calls) {
		t.Fatalf("%d spans for %d calls", len(ours), len(calls))
	}
	for i := range theirs {
		if fmt.Sprint(ours[i]) != fmt.Sprint(theirs[i]) {
			t.Errorf("span %d:\n ours   %+v\n otelgrpc %+v", i, ours[i], theirs[i])
		}
	}
}

func compareViews(a, b spanView) int {
	x, y := fmt.Sprint(a), fmt.Sprint(b)
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// TestGRPCServerSpansUnsampled: with a sampler that takes nothing, no
// span is recorded, and a sampled caller's context is still honoured by a
// parent-based sampler.
func TestGRPCServerSpansUnsampled(t *testing.T) {
	client, spans := serveSpans(t, sdktrace.ParentBased(sdktrace.NeverSample()), interceptors)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 3 {
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	sampled := metadata.AppendToOutgoingContext(ctx, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if _, err := client.Check(sampled, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	got := spans()
	if len(got) != 1 {
		t.Fatalf("%d spans recorded, want only the sampled caller's", len(got))
	}
	if id := got[0].SpanContext().TraceID().String(); id != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("span in trace %s, want the caller's", id)
	}
	if !slices.ContainsFunc(got[0].Attributes(), func(a attribute.KeyValue) bool {
		return a.Key == "rpc.response.status_code" && a.Value.AsString() == "OK"
	}) {
		t.Errorf("attributes %v: want rpc.response.status_code=OK", got[0].Attributes())
	}
}

// TestGRPCServerSpansStreams: a streaming RPC gets its span too, in the
// caller's trace, ended when the stream ends.
func TestGRPCServerSpansStreams(t *testing.T) {
	client, spans := serveSpans(t, sdktrace.AlwaysSample(), interceptors)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	w, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	got := spans()
	if len(got) != 1 || got[0].Name() != "grpc.health.v1.Health/Watch" {
		t.Fatalf("spans %v, want the Watch's", got)
	}
	if got[0].Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("Watch span's parent %s, want the caller's", got[0].Parent().SpanID())
	}
}
