package telemetry

import (
	"context"
	"net"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// grpcScope is the instrumentation scope of the server spans.
const grpcScope = "github.com/maestro-ml/maestro/internal/telemetry/grpc"

// GRPCServerSpans returns the server interceptors that give every RPC a
// server span, a child of the caller's span when the request carries W3C
// trace context. The spans are otelgrpc's server spans (name, kind,
// attributes, status), which TestGRPCServerSpansMatchOtelgrpc checks.
//
// They are interceptors rather than a stats handler, as otelgrpc is,
// because a stats handler makes gRPC copy every request's metadata and
// report each of an RPC's events whether or not the span records: with
// tracing on and a sampler that took none of them, that was a third more
// server CPU per 1-row ModelInfer, against under a tenth here
// (BenchmarkTracingUnsampled). An unrecorded RPC costs the extraction of
// its trace context and the sampler's decision. What an interceptor does
// not see: the span starts once the request message is decoded and ends
// before the response is encoded, and a request gRPC cannot decode gets
// no span (its caller's span shows the error). No metrics are recorded.
func GRPCServerSpans(t *Tracing) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	h := &serverSpans{tracer: t.Provider.Tracer(grpcScope), prop: t.Propagator}
	return h.unary, h.stream
}

type serverSpans struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

func (h *serverSpans) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	ctx, span := h.start(ctx, info.FullMethod)
	if !span.IsRecording() {
		return next(ctx, req)
	}
	resp, err := next(ctx, req)
	finish(span, err)
	return resp, err
}

func (h *serverSpans) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
	ctx, span := h.start(ss.Context(), info.FullMethod)
	err := next(srv, spanStream{ServerStream: ss, ctx: ctx})
	if span.IsRecording() {
		finish(span, err)
	}
	return err
}

// spanStream is a stream whose context carries the RPC's span.
type spanStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s spanStream) Context() context.Context { return s.ctx }

func (h *serverSpans) start(ctx context.Context, fullMethod string) (context.Context, trace.Span) {
	ctx = h.prop.Extract(ctx, incomingCarrier{ctx})
	name := strings.TrimPrefix(fullMethod, "/")
	ctx, span := h.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(semconv.RPCMethod(name), semconv.RPCSystemNameGRPC)
		if p, ok := peer.FromContext(ctx); ok && p.LocalAddr != nil {
			span.SetAttributes(serverAddress(p.LocalAddr.String())...)
		}
	}
	return ctx, span
}

// finish ends span with the RPC's outcome.
func finish(span trace.Span, err error) {
	code := codes.OK
	if err != nil {
		s, _ := status.FromError(err)
		code = s.Code()
		if serverFault(code) {
			span.SetStatus(otelcodes.Error, s.Message())
		}
	}
	span.SetAttributes(semconv.RPCResponseStatusCode(codeName(code)))
	span.End()
}

// serverFault reports whether code is the server's failure, which marks
// its span as an error; the others are the caller's (a bad argument, a
// missing model) or the caller's choice (cancelled).
func serverFault(code codes.Code) bool {
	switch code {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// codeNames are the canonical names of gRPC's status codes, as in
// grpc/doc/statuscodes.md (codes.Code's String spells them otherwise).
var codeNames = [...]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
	codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
	codes.Unauthenticated: "UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "CODE(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// serverAddress is the server.address and server.port of a listener's
// address.
func serverAddress(hostport string) []attribute.KeyValue {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddress(hostport)}
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddress(h)}
	}
	return []attribute.KeyValue{semconv.ServerAddress(h), semconv.ServerPort(port)}
}

// incomingCarrier reads trace context from a request's metadata one key
// at a time, without copying the whole of it as metadata.FromIncomingContext does.
type incomingCarrier struct{ ctx context.Context }

func (c incomingCarrier) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set is never called: extraction only reads.
func (incomingCarrier) Set(string, string) {}

func (c incomingCarrier) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}
