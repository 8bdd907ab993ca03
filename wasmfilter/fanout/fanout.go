// Package fanout is the fanout proxy-wasm filter: per route, it sends an
// Open Inference Protocol request (REST/JSON or gRPC) to every member of an
// ensemble concurrently, gathers their answers within a timeout, checks the
// quorum and answers with the members' outputs combined (package combine);
// or it chains members in a sequence; and it copies requests to shadow
// models whose answers are compared with the user's, in metrics only.
//
// REST requests are answered locally. gRPC requests cannot be (Envoy turns
// a gRPC local reply into a trailers-only response, with no body), so the
// request goes on to the route's primary member, the others are called out
// of band, and the primary's response body is rewritten with the combined
// result; a failed quorum becomes grpc-status UNAVAILABLE in the trailers.
//
// The filter's configuration is filterconfig.Fanout (JSON); its metrics
// and headers are documented in docs/filters.md. The main package in cmd
// registers New with the proxy-wasm binding.
package fanout

import (
	"strconv"
	"strings"
	"time"

	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// Response headers (REST) and trailers (gRPC) naming what happened.
const (
	HeaderAnswered = "x-maestro-fanout-answered"
	HeaderMissing  = "x-maestro-fanout-missing"
	HeaderLatency  = "x-maestro-fanout-latency-ms"
	HeaderStrategy = "x-maestro-fanout-strategy"
)

// Response parameters carrying the same facts inside the OIP response.
const (
	ParamAnswered = "fanout_answered"
	ParamMissing  = "fanout_missing"
	ParamLatency  = "fanout_latency_ms"
	ParamStrategy = "fanout_strategy"
	// ParamMembers carries each answering member's scores, so a client can
	// see what each contributed: "label=s1 s2 ...;label=...", the first
	// MaxMemberScores scores of each, row-major.
	ParamMembers = "fanout_member_scores"
)

// MaxMemberScores bounds the scores ParamMembers carries per member.
const MaxMemberScores = 16

// Metric names follow the mesh's scheme, maestro_fanout_<what>[_<unit>],
// with tags encoded in the name after it, dotted:
// <name>.route.<route>, <name>.route.<route>.member.<member> and
// <name>.route.<route>.shadow.<shadow>. Tag values keep letters, digits,
// '_', '-', '/' and ':'; other characters (notably '.') become '_', values
// are cut at 64 bytes, and an empty one is "none".
const metricPrefix = "maestro_fanout_"

const (
	grpcService = "inference.GRPCInferenceService"
	grpcMethod  = "ModelInfer"
	grpcPath    = "/" + grpcService + "/" + grpcMethod

	grpcUnavailable      = 14
	grpcInvalidArgument  = 3
	grpcInternal         = 13
	grpcDeadlineExceeded = 4
)

// isTraceHeader says whether a request header is copied onto every
// callout, so that a fan-out shows in one trace.
func isTraceHeader(name string) bool {
	switch name {
	case "traceparent", "tracestate", "x-request-id", "b3",
		"x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled":
		return true
	}
	return false
}

// New returns the filter's VM context, for the main package to register
// with proxywasm.SetVMContext.
func New() pw.VMContext { return vmContext{} }

type vmContext struct{ pw.DefaultVMContext }

func (vmContext) NewPluginContext(uint32) pw.PluginContext {
	return &plugin{
		defineCounter: func(name string) (counter, error) { return pw.DefineCounter(name) },
		counters:      map[metricKey]counter{},
		histograms:    map[metricKey]pw.Histogram{},
		routeMetrics:  map[*filterconfig.FanoutRoute]*routeMetrics{},
		shadows:       map[uint64]*shadowCmp{},
		sampling:      map[string]float64{},
		routePath:     pw.NewPropertyPath("xds", "route_name"),
		epoch:         time.Now(),
	}
}

// now is the time for measuring members' latencies: the epoch plus the
// monotonic time since, one host call where time.Now in a wasip1 module
// makes two (the wall and the monotonic clock), several times a fan-out.
// Only differences of these times are used, so the wall clock's own
// steps and slews do not matter.
func (p *plugin) now() time.Time { return p.epoch.Add(time.Since(p.epoch)) }

// plugin is the root context: the configuration, metric handles, and the
// shadow comparisons that may outlive their streams.
type plugin struct {
	pw.DefaultPluginContext
	cfg *filterconfig.Fanout
	// defineCounter is proxy_define_metric for counters (a fake in unit
	// tests of what the filter asks of the host).
	defineCounter func(name string) (counter, error)
	counters      map[metricKey]counter
	histograms    map[metricKey]pw.Histogram
	// routeMetrics are the configured routes' metric slots; lastMetrics
	// those of lastMetricsRoute, the route found last.
	routeMetrics     map[*filterconfig.FanoutRoute]*routeMetrics
	lastMetricsRoute *filterconfig.FanoutRoute
	lastMetrics      *routeMetrics
	shadows          map[uint64]*shadowCmp
	nextShadow       uint64
	// sampling accumulates each shadow's (and observation's) percentage; a copy is sent each
	// time it reaches 100, which gives the exact share deterministically.
	sampling map[string]float64
	// routePath is xds.route_name, serialized once.
	routePath pw.PropertyPath
	// epoch is a clock reading from which now measures: see now.
	epoch time.Time
	// free holds stream contexts for reuse (RecycleHTTPContext).
	free pw.FreeList[*stream]
}

func (p *plugin) OnPluginStart(int) bool {
	data, err := pw.GetPluginConfiguration()
	if err != nil {
		pw.LogCritical("fanout: read plugin configuration: " + err.Error())
		return false
	}
	cfg, err := filterconfig.ParseFanout(data)
	if err != nil {
		pw.LogCritical("fanout: " + err.Error())
		return false
	}
	p.cfg = cfg
	clear(p.routeMetrics) // keyed by the replaced configuration's routes
	p.lastMetricsRoute, p.lastMetrics = nil, nil
	pw.LogInfo("fanout: configured " + strconv.Itoa(len(cfg.Routes)) + " routes")
	return true
}

func (p *plugin) NewHTTPContext(uint32) pw.HTTPContext {
	if s, ok := p.free.Get(); ok {
		return s
	}
	return &stream{p: p}
}

// RecycleHTTPContext keeps a finished stream's context, and its members'
// slice, for the next stream, sparing guest allocations on every request.
// A stream's own callouts may still be answered after this, but the
// binding drops those answers (the stream's id is gone), so the closures
// that hold the context never run; the plugin's callouts (shadows,
// observations) hold no stream.
func (p *plugin) RecycleHTTPContext(h pw.HTTPContext) {
	s, ok := h.(*stream)
	if !ok || p.free.Full() {
		return
	}
	members := s.members[:cap(s.members)]
	clear(members)   // the answers are garbage now
	clear(s.headers) // they point into the finished request's buffers
	*s = stream{p: p, members: members[:0], scratch: s.scratch[:0], onAnswer: s.onAnswer, headers: s.headers[:0]}
	p.free.Put(s)
}

// routeName reads the stream's route (Envoy's xds.route_name), "" when
// the host has none. The string shares the host's answer: a stream keeps
// it only while it holds the headers to derive a model.
func (p *plugin) routeName() string {
	r, found, err := pw.LookupPropertyAt(p.routePath)
	if err != nil || !found {
		return ""
	}
	return r
}

// tagValue makes a name safe as one dotted tag value.
func tagValue(s string) string {
	if s == "" {
		return "none"
	}
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			r == '_', r == '-', r == '/', r == ':':
			return r
		}
		return '_'
	}, s)
}

// RouteMetric names a per-route metric, e.g. RouteMetric("requests_total",
// "fraud") is "maestro_fanout_requests_total.route.fraud".
func RouteMetric(name, route string) string {
	return metricPrefix + name + ".route." + tagValue(route)
}

// MemberMetric names a per-member metric, e.g. "answers_total" gives
// "maestro_fanout_member_answers_total.route.<route>.member.<member>".
func MemberMetric(name, route, member string) string {
	return metricPrefix + "member_" + name + ".route." + tagValue(route) + ".member." + tagValue(member)
}

// ShadowMetric names a per-shadow metric, e.g. "compared_total" gives
// "maestro_fanout_shadow_compared_total.route.<route>.shadow.<shadow>".
func ShadowMetric(name, route, shadow string) string {
	return metricPrefix + "shadow_" + name + ".route." + tagValue(route) + ".shadow." + tagValue(shadow)
}

// counter is a host counter (pw.Counter).
type counter interface{ Increment(n uint64) error }

// metricKey identifies a metric without building its name: the handles
// are cached by key, so the per-request path formats no names (string
// work is slow inside wasm).
type metricKey struct {
	kind              byte // 'r'oute, 'm'ember, 's'hadow
	name, route, part string
}

func routeKey(name, route string) metricKey { return metricKey{'r', name, route, ""} }

func memberKey(name, route, member string) metricKey { return metricKey{'m', name, route, member} }

func shadowKey(name, route, shadow string) metricKey { return metricKey{'s', name, route, shadow} }

func (k metricKey) String() string {
	switch k.kind {
	case 'm':
		return MemberMetric(k.name, k.route, k.part)
	case 's':
		return ShadowMetric(k.name, k.route, k.part)
	}
	return RouteMetric(k.name, k.route)
}

// count adds n to the counter k, defining it on first use. A metric the
// host refuses is logged, never fatal to the request.
//
// n == 0 only defines the counter (so that it is exported, at 0, from the
// first event that could have counted it): Envoy's incrementMetric
// (source/extensions/common/wasm/context.cc) answers BadArgument to a
// counter increment that is not > 0, which a shadow comparison with no
// agreeing rows would otherwise hit on every request.
func (p *plugin) count(k metricKey, n uint64) {
	if c, ok := p.counter(k); ok {
		p.add(k, c, n)
	}
}

// counter is the handle of counter k, defined on first use.
func (p *plugin) counter(k metricKey) (counter, bool) {
	c, ok := p.counters[k]
	if !ok {
		var err error
		if c, err = p.defineCounter(k.String()); err != nil {
			pw.LogWarn("fanout: " + err.Error())
			return nil, false
		}
		p.counters[k] = c
	}
	return c, true
}

func (p *plugin) add(k metricKey, c counter, n uint64) {
	if n == 0 {
		return
	}
	if err := c.Increment(n); err != nil {
		pw.LogWarn("fanout: increment " + k.String() + ": " + err.Error())
	}
}

// record adds a sample to the histogram k.
func (p *plugin) record(k metricKey, v uint64) {
	if h, ok := p.histogram(k); ok {
		p.observe(k, h, v)
	}
}

// histogram is the handle of histogram k, defined on first use.
func (p *plugin) histogram(k metricKey) (pw.Histogram, bool) {
	h, ok := p.histograms[k]
	if !ok {
		var err error
		if h, err = pw.DefineHistogram(k.String()); err != nil {
			pw.LogWarn("fanout: " + err.Error())
			return h, false
		}
		p.histograms[k] = h
	}
	return h, true
}

func (p *plugin) observe(k metricKey, h pw.Histogram, v uint64) {
	if err := h.Record(v); err != nil {
		pw.LogWarn("fanout: record " + k.String() + ": " + err.Error())
	}
}

// counterSlot and histogramSlot hold one metric's key and, once it is
// defined, its handle: the metrics every fan-out touches are kept per
// route and member (routeMetrics), so the per-request path does not hash
// keys of three strings into the plugin's maps (slow inside wasm). A
// metric is still defined on first use, as count defines it.
type counterSlot struct {
	key metricKey
	c   counter
}

type histogramSlot struct {
	key     metricKey
	h       pw.Histogram
	defined bool
}

func (p *plugin) countSlot(sl *counterSlot, n uint64) {
	if sl.c == nil {
		c, ok := p.counter(sl.key)
		if !ok {
			return
		}
		sl.c = c
	}
	p.add(sl.key, sl.c, n)
}

func (p *plugin) recordSlot(sl *histogramSlot, v uint64) {
	if !sl.defined {
		h, ok := p.histogram(sl.key)
		if !ok {
			return
		}
		sl.h, sl.defined = h, true
	}
	p.observe(sl.key, sl.h, v)
}

// routeMetrics are the slots of the metrics every request of a route
// counts.
type routeMetrics struct {
	requests counterSlot
	members  []memberMetrics
}

type memberMetrics struct {
	answers counterSlot
	latency histogramSlot
}

// metricsOf is route r's slots, made on the route's first request.
func (p *plugin) metricsOf(r *filterconfig.FanoutRoute) *routeMetrics {
	if m := p.lastMetrics; m != nil && p.lastMetricsRoute == r {
		return m // a map lookup costs hundreds of nanoseconds in wasm
	}
	if m, ok := p.routeMetrics[r]; ok {
		p.lastMetricsRoute, p.lastMetrics = r, m
		return m
	}
	m := &routeMetrics{requests: counterSlot{key: routeKey("requests_total", r.Route)}, members: make([]memberMetrics, len(r.Members))}
	for i := range r.Members {
		label := r.Members[i].Label()
		m.members[i] = memberMetrics{answers: counterSlot{key: memberKey("answers_total", r.Route, label)},
			latency: histogramSlot{key: memberKey("latency_ms", r.Route, label)}}
	}
	p.routeMetrics[r] = m
	p.lastMetricsRoute, p.lastMetrics = r, m
	return m
}

// sample decides whether this request gets a copy for the shadow.
func (p *plugin) sample(route string, s *filterconfig.Shadow) bool {
	return p.every(route+"\x00"+s.Label(), s.Percent)
}

// every decides whether this event of the sampling key gets percent's
// share: the exact share, deterministically.
func (p *plugin) every(key string, percent float64) bool {
	acc := p.sampling[key] + percent
	hit := acc >= 100
	if hit {
		acc -= 100
	}
	p.sampling[key] = acc
	return hit
}
