// Package telemetry sets up the logging, Prometheus metrics and OpenTelemetry
// tracing that every maestro component shares, so that all of them are
// configured, named and switched on the same way.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Namespace prefixes every Prometheus metric maestro registers.
const Namespace = "maestro"

// NewLogger returns a structured logger writing to w. format is "text" or
// "json"; anything else is an error so that a typo in a flag is not silently
// ignored.
func NewLogger(w io.Writer, level slog.Level, format string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
}

// NewRegistry returns a Prometheus registry holding the Go runtime and process
// collectors. Each component registers its own metrics on it; there is no
// use of the global default registry, so tests can run servers side by side.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// MetricsHandler serves reg in the Prometheus exposition format.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// Tracing is what a component needs to create and propagate spans.
type Tracing struct {
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator
	// Shutdown flushes and stops the exporter. It is safe to call when
	// tracing is off.
	Shutdown func(context.Context) error
}

// Enabled reports whether the standard OTEL_TRACES_EXPORTER variable asks
// for traces. Tracing is off by default: an unset variable means "none".
func Enabled() bool {
	v := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))
	return v != "" && v != "none"
}

// NewTracing builds the tracer provider chosen by the standard OTEL_*
// variables (OTEL_TRACES_EXPORTER=otlp|console|none, OTEL_EXPORTER_OTLP_*,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES). service is the default
// service name when OTEL_SERVICE_NAME is unset. The propagator is always W3C
// trace context plus baggage, so context flows through even when this
// process does not export spans.
func NewTracing(ctx context.Context, service string) (*Tracing, error) {
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	if !Enabled() {
		return &Tracing{
			Provider:   noop.NewTracerProvider(),
			Propagator: prop,
			Shutdown:   func(context.Context) error { return nil },
		}, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("trace exporter: %w", err)
	}
	// Options apply in order, so the environment's OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES override the built-in service name.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{Provider: tp, Propagator: prop, Shutdown: tp.Shutdown}, nil
}
