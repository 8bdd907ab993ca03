package tracing

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// recorded is a tracer provider whose ended spans are kept in memory.
type recorded struct {
	rec     *tracetest.SpanRecorder
	tracing *telemetry.Tracing
}

func newRecorded(t *testing.T, more ...sdktrace.SpanProcessor) recorded {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	opts := []sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(rec)}
	for _, p := range more {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	return recorded{rec: rec, tracing: &telemetry.Tracing{Provider: tp, Propagator: prop, Shutdown: tp.Shutdown}}
}

// spans is a set of ended spans with lookups used by the assertions.
type spans []sdktrace.ReadOnlySpan

// inTrace keeps the spans of trace id.
func (s spans) inTrace(id trace.TraceID) spans {
	var out spans
	for _, sp := range s {
		if sp.SpanContext().TraceID() == id {
			out = append(out, sp)
		}
	}
	return out
}

// named keeps the spans called name, of kind kind (any kind when
// trace.SpanKindUnspecified).
func (s spans) named(name string, kind trace.SpanKind) spans {
	var out spans
	for _, sp := range s {
		if sp.Name() == name && (kind == trace.SpanKindUnspecified || sp.SpanKind() == kind) {
			out = append(out, sp)
		}
	}
	return out
}

// one is the single span called name of kind kind, failing otherwise.
func (s spans) one(t *testing.T, name string, kind trace.SpanKind) sdktrace.ReadOnlySpan {
	t.Helper()
	got := s.named(name, kind)
	if len(got) != 1 {
		t.Fatalf("want one %s span %q, got %d among:\n%s", kind, name, len(got), s)
	}
	return got[0]
}

// byID finds the span with id.
func (s spans) byID(id trace.SpanID) sdktrace.ReadOnlySpan {
	for _, sp := range s {
		if sp.SpanContext().SpanID() == id {
			return sp
		}
	}
	return nil
}

// String lists the spans, one a line, for failure messages.
func (s spans) String() string {
	var b strings.Builder
	for _, sp := range s {
		fmt.Fprintf(&b, "  %s %s %q trace=%s span=%s parent=%s\n", sp.InstrumentationScope().Name, sp.SpanKind(),
			sp.Name(), sp.SpanContext().TraceID(), sp.SpanContext().SpanID(), sp.Parent().SpanID())
	}
	return b.String()
}

// attr is the value of attribute key of sp, emitted as a string ("" when
// absent).
func attr(sp sdktrace.ReadOnlySpan, key string) string {
	for _, a := range sp.Attributes() {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// childOf fails unless child is a direct child of parent in its trace.
func childOf(t *testing.T, child, parent sdktrace.ReadOnlySpan) {
	t.Helper()
	if child.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("%q is in trace %s, its parent %q in %s", child.Name(), child.SpanContext().TraceID(),
			parent.Name(), parent.SpanContext().TraceID())
	}
	if child.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("%q has parent span %s, want %q (%s)", child.Name(), child.Parent().SpanID(), parent.Name(),
			parent.SpanContext().SpanID())
	}
}

// documented fails for every span name in s that docs/tracing.md does not
// show in backquotes, so the page cannot fall behind the code. skip names
// the test's own spans.
func documented(t *testing.T, s spans, skip ...string) {
	t.Helper()
	var names []string
	for _, sp := range s {
		if !slices.Contains(skip, sp.Name()) && !slices.Contains(names, sp.Name()) {
			names = append(names, sp.Name())
		}
	}
	documentedNames(t, names...)
}

const grpcService = "inference.GRPCInferenceService"

// documentedNames fails for every name docs/tracing.md does not show in
// backquotes.
func documentedNames(t *testing.T, names ...string) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(inferencetest.ModuleRoot(t), "docs", "tracing.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		// gRPC spans are documented once, as the service's <Method>, for
		// every method the service has.
		if m, ok := strings.CutPrefix(n, grpcService+"/"); ok && slices.ContainsFunc(pb.GRPCInferenceService_ServiceDesc.Methods,
			func(d grpc.MethodDesc) bool { return d.MethodName == m }) {
			n = grpcService + "/<Method>"
		}
		if !strings.Contains(string(doc), "`"+n+"`") {
			t.Errorf("span %q is not documented in docs/tracing.md", n)
		}
	}
}

// endedNotifier signals ended when a span of kind ends, without blocking
// the span's goroutine.
type endedNotifier struct {
	kind  trace.SpanKind
	ended chan struct{}
}

func (n endedNotifier) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (n endedNotifier) OnEnd(s sdktrace.ReadOnlySpan) {
	if s.SpanKind() == n.kind {
		select {
		case n.ended <- struct{}{}:
		default:
		}
	}
}
func (n endedNotifier) Shutdown(context.Context) error   { return nil }
func (n endedNotifier) ForceFlush(context.Context) error { return nil }
