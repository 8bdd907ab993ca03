package xds

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// otelTracer is the name of Envoy's OpenTelemetry tracer extension.
const otelTracer = "envoy.tracers.opentelemetry"

// Listener creates an Envoy listener (or a gRPC API listener) from l; with
// tracing set, its connection manager emits spans.
func Listener(l *model.Listener, tracing *model.Tracing) (*listenerv3.Listener, error) {
	hcm, err := ConnectionManager(l, tracing)
	if err != nil {
		return nil, err
	}
	packed, err := anyOf(hcm)
	if err != nil {
		return nil, err
	}
	if l.Kind == model.ListenerAPI {
		return &listenerv3.Listener{Name: l.Name, ApiListener: &listenerv3.ApiListener{ApiListener: packed}}, nil
	}
	chain := &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{
		Name:       wellknown.HTTPConnectionManager,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: packed},
	}}}
	if l.TLS != nil {
		ts, err := downstreamTLS(l.TLS, downstreamProtocol(l), l.Kind == model.ListenerGRPCServer)
		if err != nil {
			return nil, err
		}
		chain.TransportSocket = ts
	}
	return &listenerv3.Listener{
		Name:         l.Name,
		Address:      socketAddress(l.Address, l.Port),
		FilterChains: []*listenerv3.FilterChain{chain},
	}, nil
}

// socketAddress creates a TCP address.
func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// ConnectionManager creates the HTTP connection manager of l: routes over
// RDS (inline for proxyless gRPC), the HTTP filters, and tracing.
func ConnectionManager(l *model.Listener, tracing *model.Tracing) (*hcmv3.HttpConnectionManager, error) {
	filters, err := HTTPFilters(l)
	if err != nil {
		return nil, err
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:  l.Name,
		CodecType:   codec(l),
		HttpFilters: filters,
	}
	if l.InlineRoutes() {
		rc, err := routeConfiguration(&l.Routes, modeOf(l.Kind))
		if err != nil {
			return nil, err
		}
		hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
		return hcm, nil
	}
	hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
		ConfigSource:    adsSource(),
		RouteConfigName: l.Routes.Name,
	}}
	if tracing != nil {
		t, err := tracingConfig(tracing)
		if err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
		hcm.Tracing = t
	}
	return hcm, nil
}

// downstreamProtocol is what l's clients may speak. A gateway takes
// standard OIP clients of both kinds on one port, REST over HTTP/1.1 and
// gRPC over h2c (prior knowledge) or h2 (ALPN), whatever its routes'
// protocol: with HTTP2 only, Envoy would refuse every REST request. Other
// gRPC listeners (a sidecar's inbound for a gRPC service, proxyless) speak
// HTTP/2 only.
func downstreamProtocol(l *model.Listener) model.Protocol {
	if l.Kind == model.ListenerGateway {
		return model.ProtocolHTTP
	}
	return l.Protocol
}

// codec picks HTTP/2 for HTTP/2-only listeners and lets Envoy detect the
// protocol (AUTO) otherwise.
func codec(l *model.Listener) hcmv3.HttpConnectionManager_CodecType {
	if downstreamProtocol(l) == model.ProtocolGRPC {
		return hcmv3.HttpConnectionManager_HTTP2
	}
	return hcmv3.HttpConnectionManager_AUTO
}

// tracingConfig sends spans to the OTLP collector cluster of t.
func tracingConfig(t *model.Tracing) (*hcmv3.HttpConnectionManager_Tracing, error) {
	otel, err := anyOf(&tracev3.OpenTelemetryConfig{
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: t.Cluster},
		}},
		ServiceName: t.ServiceName,
	})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpConnectionManager_Tracing{
		RandomSampling: &typev3.Percent{Value: t.SamplePercent},
		Provider: &tracev3.Tracing_Http{
			Name:       otelTracer,
			ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: otel},
		},
	}, nil
}
