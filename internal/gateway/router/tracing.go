package router

import (
	"context"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// carrier lets the W3C propagator read and write a Message's headers.
type carrier struct{ m *Message }

func (c carrier) Get(k string) string {
	v, _ := c.m.Get(strings.ToLower(k))
	return v
}

func (c carrier) Set(k, v string) {
	k = strings.ToLower(k)
	for i, kv := range c.m.Headers {
		if kv[0] == k {
			c.m.Headers[i][1] = v
			return
		}
	}
	c.m.Headers = append(c.m.Headers, [2]string{k, v})
}

func (c carrier) Keys() []string {
	out := make([]string, 0, len(c.m.Headers))
	for _, kv := range c.m.Headers {
		out = append(out, kv[0])
	}
	return out
}

var w3c = propagation.TraceContext{}

// startSpan continues the client's W3C trace (or starts one, sampled at
// the HCM's percentage), names the span as Envoy does by default (the
// request's authority and path), and writes the new span's traceparent
// into req so the upstream joins the trace.
func startSpan(ctx context.Context, tr trace.Tracer, req *Message) (context.Context, func(code int)) {
	ctx = w3c.Extract(ctx, carrier{req})
	host, _ := req.Get(":authority")
	path, _ := req.Get(":path")
	method, _ := req.Get(":method")
	ctx, span := tr.Start(ctx, host+path, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.method", method), attribute.String("http.url", path), attribute.String("component", "proxy")))
	w3c.Inject(ctx, carrier{req})
	return ctx, func(code int) {
		span.SetAttributes(attribute.String("http.status_code", strconv.Itoa(code)))
		if code >= 500 {
			span.SetStatus(codes.Error, "")
		}
		span.End()
	}
}
