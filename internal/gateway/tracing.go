package gateway

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/maestro-ml/maestro/internal/gateway/upstream"
	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

// tracers holds one OpenTelemetry tracer provider per (collector cluster,
// service name, sampling) an HCM asks for, exporting spans over OTLP/gRPC
// to a host of that cluster as Envoy's OpenTelemetry tracer does.
type tracers struct {
	clusters *upstream.Manager

	mu        sync.Mutex
	providers map[xdsconfig.Tracing]*sdktrace.TracerProvider
	conns     []*grpc.ClientConn
}

func newTracers(clusters *upstream.Manager) *tracers {
	return &tracers{clusters: clusters, providers: map[xdsconfig.Tracing]*sdktrace.TracerProvider{}}
}

// tracer returns the tracer for cfg, creating its provider once.
func (t *tracers) tracer(ctx context.Context, cfg xdsconfig.Tracing) (trace.Tracer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tp, ok := t.providers[cfg]; ok {
		return tp.Tracer("maestro-gateway"), nil
	}
	cluster := cfg.Cluster
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		c := t.clusters.Get(cluster)
		if c == nil {
			return nil, fmt.Errorf("tracing cluster %q unknown", cluster)
		}
		h, err := c.Pick()
		if err != nil {
			return nil, fmt.Errorf("tracing cluster %q: %w", cluster, err)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", h.Addr)
	}
	// passthrough: the cluster name is no DNS name; the dialer picks a
	// host of the cluster for each connection.
	conn, err := grpc.NewClient("passthrough:///"+cluster, grpc.WithContextDialer(dial), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("tracing exporter to cluster %q: %w", cluster, err)
	}
	t.conns = append(t.conns, conn)
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithGRPCConn(conn), otlptracegrpc.WithTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("tracing exporter to cluster %q: %w", cluster, err)
	}
	res := resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		// A sampled (or unsampled) parent decides; a new trace is sampled
		// at the HCM's random_sampling percentage.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SamplePercent/100))),
	)
	t.providers[cfg] = tp
	return tp.Tracer("maestro-gateway"), nil
}

func (t *tracers) shutdown(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tp := range t.providers {
		_ = tp.Shutdown(ctx)
	}
	for _, c := range t.conns {
		_ = c.Close()
	}
}
