package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
)

func TestNewLoggerFormats(t *testing.T) {
	for _, format := range []string{"", "text", "json"} {
		var buf bytes.Buffer
		log, err := NewLogger(&buf, slog.LevelInfo, format)
		if err != nil {
			t.Fatalf("format %q: %v", format, err)
		}
		log.Info("hello", "k", "v")
		if !strings.Contains(buf.String(), "hello") {
			t.Errorf("format %q wrote %q", format, buf.String())
		}
	}
	if _, err := NewLogger(&bytes.Buffer{}, slog.LevelInfo, "xml"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("unknown format: got %v, want an error naming it", err)
	}
}

func TestTracingOffByDefaultStillPropagates(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	tr, err := NewTracing(context.Background(), "maestro-test")
	if err != nil {
		t.Fatal(err)
	}
	if Enabled() {
		t.Fatal("tracing enabled with OTEL_TRACES_EXPORTER unset")
	}
	// An incoming traceparent must survive a hop through a process that
	// does not export, or traces break at every maestro component.
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	in := propagation.MapCarrier{"traceparent": parent}
	ctx := tr.Propagator.Extract(context.Background(), in)
	out := propagation.MapCarrier{}
	tr.Propagator.Inject(ctx, out)
	if out["traceparent"] != parent {
		t.Errorf("traceparent = %q, want %q", out["traceparent"], parent)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestTracingConsoleExporter(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	tr, err := NewTracing(context.Background(), "maestro-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	_, span := tr.Provider.Tracer("test").Start(context.Background(), "op")
	if !span.SpanContext().IsValid() {
		t.Error("span from an enabled provider has no valid context")
	}
	span.End()
}
