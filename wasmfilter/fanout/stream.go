package fanout

import (
	"strconv"
	"strings"
	"time"

	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

type protocol int

const (
	protoNone protocol = iota
	protoREST
	protoGRPC
	// protoGRPCModelQuery is a gRPC ModelReady or ModelMetadata call on an
	// ensemble route: the primary member answers it for its own model.
	protoGRPCModelQuery
)

// maxBody bounds the request and response bodies the filter reads.
const maxBody = 64 << 20

// stream is one HTTP stream's context.
type stream struct {
	pw.DefaultHTTPContext
	p          *plugin
	route      *filterconfig.FanoutRoute
	routeLabel string
	metrics    *routeMetrics // route's
	proto      protocol
	path       string
	grpc       bool // content-type application/grpc
	// deriving: the headers are held until the first message names the
	// model (model.go); routeName is the route Envoy picked without it.
	deriving  bool
	routeName string
	// model and version the client asked for (REST path, gRPC message).
	model, version string
	trace          [][2]string
	req            *oip.Request
	reqMsg         []byte // the request as received (gRPC: unframed)
	members        []memberState
	pending        int
	// primary is the member the gRPC request is forwarded to (-1: none).
	primary int
	// answered: the client's answer is settled (local reply sent, or the
	// gRPC response rewritten); later callbacks pass through.
	answered bool
	// waiting: the gRPC response is paused until the members answer.
	waiting bool
	// trailersOnly: the paused gRPC response ended in its headers.
	trailersOnly bool
	respStatus   string
	respBody     []byte // REST/gRPC pass-through copy, for shadows
	shadowIDs    []uint64
	primaryTold  bool
	// observed: the observation of this request is settled (observe.go).
	observed bool

	// Kept when the context is recycled, so that a fan-out allocates none
	// of them (each allocation is slow inside wasm):
	// scratch holds each message the filter builds and hands the host at
	// once (the host copies it): the rewritten requests, the answer.
	scratch []byte
	// onAnswer[i] is the gRPC callback of member i's call.
	onAnswer []pw.GRPCCallCallback
	// headers receives the request headers.
	headers [][2]string
}

func (s *stream) ensemble() bool { return s.route != nil && len(s.route.Members) > 0 }

// guard turns a panic in a callback into a logged error and a 500 (or
// INTERNAL) answer, so no input can trap the VM.
func (s *stream) guard(action *pw.Action) {
	r := recover()
	if r == nil {
		return
	}
	pw.LogCritical("fanout: internal error: " + panicText(r))
	if !s.answered {
		s.answered = true
		s.localError(500, grpcInternal, "fanout: internal error")
	}
	*action = pw.ActionPause
}

func panicText(r any) string {
	switch v := r.(type) {
	case error:
		return v.Error()
	case string:
		return v
	}
	return "panic"
}

func (s *stream) OnHTTPRequestHeaders(_ int, endOfStream bool) pw.Action {
	routeName, read, pass := s.passesThrough(endOfStream)
	if pass {
		return pw.ActionContinue
	}
	if !read {
		routeName = s.p.routeName()
	}
	return s.onRequestHeaders(routeName, endOfStream)
}

// passesThrough reports, reading as little as it can, whether the filter
// has nothing to do on this stream: no model to derive (model routing is
// off, the request carries the model header, or it is no per-model gRPC
// call) and a route without fan-out settings. Most routes have none, and
// fetching the whole header map costs a serialization, a copy into the
// guest and allocations on every request. Later callbacks of such a stream
// return at once (its route stays nil). read says whether it read the
// route's name, routeName.
func (s *stream) passesThrough(endOfStream bool) (routeName string, read, pass bool) {
	cfg := s.p.cfg
	if cfg == nil {
		return "", false, false // the guard reports it
	}
	if len(cfg.Routes) > 0 {
		routeName, read = s.p.routeName(), true
		if cfg.Route(routeName) != nil {
			return routeName, read, false
		}
	}
	if mr := cfg.ModelRouting; mr != nil && !endOfStream {
		_, found, err := pw.LookupHeader(pw.MapTypeHTTPRequestHeaders, mr.Header)
		if err != nil {
			return routeName, read, false
		}
		if !found {
			path, _, err := pw.LookupHeader(pw.MapTypeHTTPRequestHeaders, ":path")
			if err != nil || namesModel(path) {
				return routeName, read, false // perhaps a model to derive: see onRequestHeaders
			}
		}
	}
	return routeName, read, true
}

// onRequestHeaders is OnHTTPRequestHeaders for a stream the filter may
// act on, on the route Envoy picked, routeName.
func (s *stream) onRequestHeaders(routeName string, endOfStream bool) (action pw.Action) {
	defer s.guard(&action)
	headers, err := pw.AppendHeaderMap(s.headers[:0], pw.MapTypeHTTPRequestHeaders)
	s.headers = headers
	if err != nil {
		pw.LogError("fanout: request headers: " + err.Error())
		return pw.ActionContinue
	}
	var method, ctype string
	hasModel := false
	mr := s.p.cfg.ModelRouting
	for _, kv := range headers {
		switch k := strings.ToLower(kv[0]); {
		case k == ":method":
			method = kv[1]
		case k == ":path":
			s.path = kv[1]
		case k == "content-type":
			ctype = kv[1]
		case isTraceHeader(k):
			s.trace = append(s.trace, [2]string{k, kv[1]})
		case mr != nil && k == mr.Header:
			hasModel = true
		}
	}
	s.grpc = strings.HasPrefix(ctype, "application/grpc")
	if mr != nil && !hasModel && !endOfStream && s.grpc && namesModel(s.path) {
		// Hold the headers until the first message names the model:
		// OnHTTPRequestBody sets the header, and Envoy then routes by it.
		s.routeName, s.deriving = routeName, true
		return pw.ActionPause
	}
	return s.begin(routeName, method, endOfStream)
}

// begin looks up the settings of route routeName and starts handling the
// request if it has any: an ensemble or shadows, for a gRPC ModelInfer or
// a REST infer call.
func (s *stream) begin(routeName, method string, endOfStream bool) pw.Action {
	s.route = s.p.cfg.Route(routeName)
	if s.route == nil {
		return pw.ActionContinue
	}
	s.routeLabel = s.route.Route
	if s.grpc && s.path != grpcPath && namesModel(s.path) {
		// A standard client asks for an ensemble's readiness or metadata
		// before inferring; no server knows the ensemble's name, so the
		// primary, where the route sends it, is asked for its model.
		if !s.ensemble() || endOfStream {
			s.route = nil
			return pw.ActionContinue
		}
		s.proto = protoGRPCModelQuery
		_ = pw.RemoveHeader(pw.MapTypeHTTPRequestHeaders, "content-length")
		return pw.ActionContinue
	}
	switch {
	case s.grpc && s.path == grpcPath:
		s.proto = protoGRPC
	default:
		m, v, ok := oip.InferPath(s.path)
		if !ok || method != "POST" {
			s.route = nil
			return pw.ActionContinue
		}
		s.proto, s.model, s.version = protoREST, m, v
	}
	if n := len(s.route.Members); n <= cap(s.members) {
		s.members = s.members[:n] // a reused stream's, cleared
	} else {
		s.members = make([]memberState, n)
	}
	s.primary = -1
	s.metrics = s.p.metricsOf(s.route)
	s.p.countSlot(&s.metrics.requests, 1)
	if endOfStream {
		s.reject("inference request has no body")
		return pw.ActionPause
	}
	if s.ensemble() {
		// The body changes (gRPC) or the filter answers (REST).
		_ = pw.RemoveHeader(pw.MapTypeHTTPRequestHeaders, "content-length")
		if s.proto == protoREST {
			return pw.ActionPause
		}
	}
	return pw.ActionContinue
}

func (s *stream) OnHTTPRequestBody(bodySize int, endOfStream bool) pw.Action {
	if !s.deriving && (s.route == nil || s.answered) {
		return pw.ActionContinue
	}
	return s.onRequestBody(bodySize, endOfStream)
}

func (s *stream) onRequestBody(bodySize int, endOfStream bool) (action pw.Action) {
	defer s.guard(&action)
	if s.deriving {
		if a, settled := s.deriveModel(bodySize, endOfStream); settled {
			return a
		}
	}
	if s.route == nil || s.answered {
		return pw.ActionContinue
	}
	if s.proto == protoGRPCModelQuery {
		return s.askPrimary(bodySize, endOfStream)
	}
	if !s.ensemble() {
		// Shadows only: copy the request as it passes, never hold it.
		chunk, err := pw.GetHTTPRequestBody(0, bodySize)
		if err == nil && len(s.reqMsg)+len(chunk) <= maxBody {
			s.reqMsg = append(s.reqMsg, chunk...)
		}
		if endOfStream {
			s.passThroughShadows()
		}
		return pw.ActionContinue
	}
	if !endOfStream {
		if bodySize > maxBody {
			s.reject("request body exceeds " + strconv.Itoa(maxBody) + " bytes")
		}
		return pw.ActionPause
	}
	body, err := pw.GetHTTPRequestBody(0, bodySize)
	if err != nil {
		s.reject("read request body: " + err.Error())
		return pw.ActionPause
	}
	if s.proto == protoREST {
		return s.startREST(body)
	}
	return s.startGRPC(body)
}

// passThroughShadows parses the copied request of a shadow-only route and
// sends the shadows their copies.
func (s *stream) passThroughShadows() {
	body := s.reqMsg
	switch s.proto {
	case protoREST:
		req, err := oip.CheckJSONRequest(body)
		if err != nil {
			return // the route's own backend will reject it
		}
		s.req = req
	case protoGRPC:
		msg, err := oip.Unframe(body)
		if err != nil {
			return
		}
		req, err := oip.ParseGRPCRequest(msg)
		if err != nil {
			return
		}
		s.req, s.reqMsg = req, msg
		s.model, s.version = req.ModelName, req.ModelVersion
	}
	s.startShadows()
}

// reject answers a malformed request: 400 for REST, INVALID_ARGUMENT for
// gRPC.
func (s *stream) reject(msg string) {
	s.p.count(routeKey("bad_requests_total", s.routeLabel), 1)
	s.answered = true
	s.localError(400, grpcInvalidArgument, "fanout: "+msg)
}

// localError sends an error as a local reply in the stream's protocol.
func (s *stream) localError(httpStatus uint32, grpcStatus int32, msg string) {
	var err error
	if s.proto == protoGRPC || s.proto == protoGRPCModelQuery {
		err = pw.SendHTTPResponse(200, [][2]string{{"grpc-message", grpcMessage(msg)}}, []byte(msg), grpcStatus)
	} else {
		err = pw.SendHTTPResponse(httpStatus, [][2]string{{"content-type", "application/json"}}, oip.EncodeJSONError(msg), pw.NoGRPCStatus)
	}
	if err != nil {
		pw.LogError("fanout: send local response: " + err.Error())
	}
}

func (s *stream) calloutHeaders(path string, m *filterconfig.FanoutMember) [][2]string {
	authority := m.Authority
	if authority == "" {
		authority = m.Cluster
	}
	h := [][2]string{{":method", "POST"}, {":path", path}, {":authority", authority}, {"content-type", "application/json"}}
	return append(h, s.trace...)
}

func (s *stream) timeout() time.Duration {
	return time.Duration(s.route.EffectiveTimeoutMs()) * time.Millisecond
}

// memberDone records member i's outcome and counts it: err says why it is
// missing; otherwise it answered resp (nil when the answer went straight to
// the client, as the last step of a gRPC sequence does).
func (s *stream) memberDone(i int, resp *oip.Response, err string) {
	ms := &s.members[i]
	ms.done = true
	if ms.ended.IsZero() {
		ms.ended = s.p.now()
	}
	ms.latency = ms.ended.Sub(ms.sent)
	label := s.route.Members[i].Label()
	if err == "" && resp != nil {
		a, t, aerr := AnswerOf(s.route, i, resp)
		if aerr != nil {
			err = aerr.Error()
		} else {
			ms.resp, ms.answer, ms.output = resp, a, t
		}
	}
	ms.err = err
	switch {
	case err == "":
		mm := &s.metrics.members[i]
		s.p.countSlot(&mm.answers, 1)
		s.p.recordSlot(&mm.latency, uint64(ms.latency.Milliseconds()))
	case strings.HasPrefix(err, "timeout"):
		s.p.count(memberKey("timeouts_total", s.routeLabel, label), 1)
	default:
		s.p.count(memberKey("failures_total", s.routeLabel, label), 1)
	}
	if err != "" {
		pw.LogWarn("fanout: route " + tagValue(s.routeLabel) + ": member " + label + " missing: " + err)
	}
}

func (s *stream) OnHTTPResponseHeaders(_ int, endOfStream bool) pw.Action {
	if s.route == nil || s.answered {
		return pw.ActionContinue
	}
	return s.onResponseHeaders(endOfStream)
}

func (s *stream) onResponseHeaders(endOfStream bool) (action pw.Action) {
	defer s.guard(&action)
	s.respStatus, _ = pw.GetHTTPResponseHeader(":status")
	if s.proto == protoGRPC && s.ensemble() && !s.route.Sequence {
		_ = pw.RemoveHeader(pw.MapTypeHTTPResponseHeaders, "content-length")
		if endOfStream {
			s.trailersOnly = true
			return s.endGRPCResponse()
		}
		return pw.ActionContinue
	}
	if endOfStream {
		s.tellPrimary(nil)
	}
	return pw.ActionContinue
}

func (s *stream) OnHTTPResponseBody(bodySize int, endOfStream bool) pw.Action {
	if s.route == nil || s.answered {
		return pw.ActionContinue
	}
	return s.onResponseBody(bodySize, endOfStream)
}

func (s *stream) onResponseBody(bodySize int, endOfStream bool) (action pw.Action) {
	defer s.guard(&action)
	if s.proto == protoGRPC && s.ensemble() && !s.route.Sequence {
		if !endOfStream {
			return pw.ActionPause // buffer the primary's answer to rewrite it
		}
		return s.endGRPCResponse()
	}
	if len(s.shadowIDs) > 0 {
		chunk, err := pw.GetHTTPResponseBody(0, bodySize)
		if err == nil && len(s.respBody)+len(chunk) <= maxBody {
			s.respBody = append(s.respBody, chunk...)
		}
		if endOfStream {
			s.tellPrimaryFromBody(s.respStatus == "200")
		}
	}
	return pw.ActionContinue
}

func (s *stream) OnHTTPResponseTrailers(int) pw.Action {
	if s.route == nil || s.answered {
		return pw.ActionContinue
	}
	return s.onResponseTrailers()
}

func (s *stream) onResponseTrailers() (action pw.Action) {
	defer s.guard(&action)
	if s.proto == protoGRPC && s.ensemble() && !s.route.Sequence {
		return s.endGRPCResponse()
	}
	if s.proto == protoGRPC {
		st, _ := pw.GetHTTPResponseTrailer("grpc-status")
		if s.route.Sequence {
			s.addSequenceTrailers()
		}
		s.tellPrimaryFromBody(st == "0")
	}
	return pw.ActionContinue
}

func (s *stream) OnHTTPStreamDone() {
	// Whatever the primary did not tell its shadows by now, it never will.
	s.tellPrimary(nil)
}
