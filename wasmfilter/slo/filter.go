package slo

import (
	"strconv"
	"time"

	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// maxModelScan bounds how much of a gRPC request body is read to find the
// model name.
const maxModelScan = 4096

// modelPeek is how much of a gRPC request body is read first: the 5-byte
// frame header and model_name, the message's first field, nearly always
// fit, and a read that fits the guest's small-value arena allocates
// nothing. Only when the name does not fit is the rest read.
const modelPeek = 128

// Register makes the slo filter the VM's plugin. Call it from an init
// function of the main package.
func Register() { pw.SetVMContext(vmContext{}) }

type vmContext struct{ pw.DefaultVMContext }

func (vmContext) NewPluginContext(uint32) pw.PluginContext {
	return &plugin{clock: new(time.Time), routePath: pw.NewPropertyPath("xds", "route_name")}
}

// hostMetrics defines stats through proxy_define_metric.
type hostMetrics struct{}

func (hostMetrics) Define(kind pw.MetricType, name string) (Metric, error) {
	switch kind {
	case pw.MetricTypeCounter:
		c, err := pw.DefineCounter(name)
		return func(v uint64) { _ = c.Increment(v) }, err
	case pw.MetricTypeGauge:
		g, err := pw.DefineGauge(name)
		return func(v uint64) { _ = g.Set(v) }, err
	default:
		h, err := pw.DefineHistogram(name)
		return func(v uint64) { _ = h.Record(v) }, err
	}
}

// hostStore is proxy-wasm shared data.
type hostStore struct{}

func (hostStore) Get(key string) ([]byte, uint32, error) { return pw.GetSharedData(key) }

func (hostStore) Set(key string, value []byte, cas uint32) error {
	return pw.SetSharedData(key, value, cas)
}

type plugin struct {
	pw.DefaultPluginContext
	meter *Meter
	// clock is a wall and monotonic reading taken at start and on every
	// tick; streams read the time as clock plus the monotonic time since,
	// one host call where time.Now makes two (wall and monotonic). The
	// wall clock can only drift from it by what it slews in one tick.
	clock *time.Time
	// routePath is xds.route_name serialized once; lastRoute is the route
	// name last read, whose string a stream on the same route reuses
	// rather than allocating its own.
	routePath pw.PropertyPath
	lastRoute string
	// lastModel is the model name last read from a message, reused as
	// lastRoute is.
	lastModel string
	// free holds stream contexts for reuse (RecycleHTTPContext).
	free pw.FreeList[*stream]
}

// routeName reads the stream's route (Envoy's xds.route_name).
func (p *plugin) routeName() (string, bool) {
	r, err := pw.GetPropertyAt(p.routePath)
	if err != nil {
		return "", false
	}
	if string(r) != p.lastRoute {
		p.lastRoute = string(r)
	}
	return p.lastRoute, true
}

func (p *plugin) OnPluginStart(int) bool {
	data, err := pw.GetPluginConfiguration()
	if err != nil {
		pw.LogError("slo: read plugin configuration: " + err.Error())
		return false
	}
	cfg, err := filterconfig.ParseSLO(data)
	if err != nil {
		pw.LogError("slo: " + err.Error())
		return false
	}
	p.meter = NewMeter(cfg, Env{Metrics: hostMetrics{}, Store: hostStore{}, Log: pw.Log})
	*p.clock = time.Now()
	if err := pw.SetTickPeriod(time.Duration(cfg.EffectiveEvaluateMs()) * time.Millisecond); err != nil {
		pw.LogError("slo: set tick period: " + err.Error())
		return false
	}
	pw.LogInfo("slo: metering " + strconv.Itoa(len(cfg.Objectives)) + " objectives")
	return true
}

func (p *plugin) OnTick() {
	now := time.Now()
	*p.clock = now
	if err := p.meter.Flush(now); err != nil {
		pw.LogWarn("slo: " + err.Error())
	}
}

// OnPluginDone merges what this worker counted since the last tick, so a
// configuration change or drain loses no requests from the shared windows.
func (p *plugin) OnPluginDone() bool {
	if p.meter != nil {
		p.OnTick()
	}
	return true
}

func (p *plugin) NewHTTPContext(uint32) pw.HTTPContext {
	if s, ok := p.free.Get(); ok {
		return s
	}
	return &stream{p: p, meter: p.meter, clock: p.clock}
}

// RecycleHTTPContext keeps a finished stream's context for the next
// stream, sparing a guest allocation on every request (a stream makes no
// callouts, so nothing else holds it).
func (p *plugin) RecycleHTTPContext(h pw.HTTPContext) {
	s, ok := h.(*stream)
	if !ok || p.free.Full() {
		return
	}
	*s = stream{p: p, meter: p.meter, clock: p.clock}
	p.free.Put(s)
}

// modelName interns a model name read from a message: requests mostly name
// the model of the one before.
func (p *plugin) modelName(b []byte) string {
	if string(b) != p.lastModel {
		p.lastModel = string(b)
	}
	return p.lastModel
}

// stream follows one request: where it goes (route, model), how it ends
// (status, grpc-status) and when.
type stream struct {
	pw.DefaultHTTPContext
	p          *plugin
	meter      *Meter
	clock      *time.Time // the plugin's, see plugin.clock
	route      string
	model      string
	grpc       bool
	scanned    int
	start, end time.Time
	status     int
	grpcStatus int
}

// The route is read when the response starts (or the stream ends without
// one), not here: by then it is the router's final choice, and each host
// call costs a guest-to-host crossing per request.
func (s *stream) OnHTTPRequestHeaders(int, bool) pw.Action {
	s.start = s.clock.Add(time.Since(*s.clock))
	s.grpcStatus = NoGRPCStatus
	path, _ := pw.GetHTTPRequestHeader(":path")
	if IsGRPCInference(path) {
		s.grpc = true
	} else {
		s.model = ModelFromPath(path)
	}
	return pw.ActionContinue
}

func (s *stream) OnHTTPRequestBody(size int, _ bool) pw.Action {
	if !s.grpc || s.model != "" || s.scanned >= maxModelScan {
		return pw.ActionContinue
	}
	// Without pausing, each callback sees only its own chunk; the model
	// name is near the start of the first message, which the first chunk
	// nearly always holds.
	n := min(size, maxModelScan)
	s.scanned += n
	if name := scanModel(n, readRequestBody); len(name) > 0 {
		s.model = s.p.modelName(name)
	}
	return pw.ActionContinue
}

func readRequestBody(n int) ([]byte, error) { return pw.GetHTTPRequestBody(0, n) }

// scanModel finds the model named in the first n bytes of a gRPC request
// body, reading them with read: modelPeek bytes first, all n only when
// those leave the answer open. The answer is ModelFromGRPC's of all n.
func scanModel(n int, read func(n int) ([]byte, error)) []byte {
	body, err := read(min(n, modelPeek))
	if err != nil {
		return nil
	}
	name, complete := modelFromGRPC(body)
	if !complete && n > len(body) {
		if body, err = read(n); err != nil {
			return nil
		}
		name, _ = modelFromGRPC(body)
	}
	return name
}

func (s *stream) OnHTTPResponseHeaders(_ int, endOfStream bool) pw.Action {
	// The route may have changed since the request headers: a filter
	// before this one (fanout, for a gRPC client that names its model only
	// in the message) set the model header, which clears Envoy's route
	// cache, and the router then picked the route anew. Envoy's stream
	// info, which xds.route_name reads, holds the router's route by now.
	if r, ok := s.p.routeName(); ok && r != "" {
		s.route = r
	}
	if v, found, err := pw.LookupHeader(pw.MapTypeHTTPResponseHeaders, ":status"); found && err == nil {
		s.status, _ = strconv.Atoi(v)
	}
	// Absent from every response but a trailers-only gRPC one: looked up
	// without building a not-found error.
	if v, found, err := pw.LookupHeader(pw.MapTypeHTTPResponseHeaders, "grpc-status"); found && err == nil {
		s.grpcStatus = ParseGRPCStatus(v)
	}
	if name, value, ok := s.meter.BudgetHeader(s.route, s.model); ok {
		_ = pw.ReplaceHTTPResponseHeader(name, value)
	}
	if endOfStream {
		s.end = s.now()
	}
	return pw.ActionContinue
}

func (s *stream) OnHTTPResponseBody(_ int, endOfStream bool) pw.Action {
	if endOfStream {
		s.end = s.now()
	}
	return pw.ActionContinue
}

func (s *stream) OnHTTPResponseTrailers(int) pw.Action {
	if v, found, err := pw.LookupHeader(pw.MapTypeHTTPResponseTrailers, "grpc-status"); err != nil {
		pw.LogDebug("slo: read trailers: " + err.Error())
	} else if found {
		s.grpcStatus = ParseGRPCStatus(v)
	}
	s.end = s.now()
	return pw.ActionContinue
}

// now is the time, read from the monotonic clock alone: time.Now in a
// wasip1 module reads the wall and the monotonic clock, two host calls,
// while the start time already holds the wall clock.
func (s *stream) now() time.Time { return s.start.Add(time.Since(s.start)) }

func (s *stream) OnHTTPStreamDone() {
	if s.end.IsZero() {
		s.end = s.now()
	}
	if s.route == "" { // no response headers: a reset or a local failure
		if r, ok := s.p.routeName(); ok {
			s.route = r
		}
	}
	err := s.meter.Observe(Observation{Route: s.route, Model: s.model, Status: s.status,
		GRPCStatus: s.grpcStatus, Latency: s.end.Sub(s.start), End: s.end})
	if err != nil {
		pw.LogWarn("slo: " + err.Error())
	}
}
