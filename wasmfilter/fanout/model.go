package fanout

import (
	"strconv"

	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// Routing standard OIP gRPC clients by model.
//
// A Triton or KServe client names its model only in the request message;
// Maestro's routes select a model by a request header
// (filterconfig.ModelRouting.Header). For a gRPC request to a per-model
// method without that header, OnHTTPRequestHeaders holds the headers
// (ActionPause) and deriveModel, in the body callbacks, reads model_name
// from the first message, sets the header and lets the request go on.
//
// Why this works in Envoy (source/extensions/common/wasm/context.cc and
// proxy-wasm-cpp-host src/context.cc):
//   - the pause in the headers callback must be a real StopIteration, so
//     that Envoy calls the filter with the body: cpp-host turns it into
//     StopAllIterationAndWatermark (no body callback at all, the request
//     waits for the idle timeout) unless the Wasm config sets
//     allow_on_headers_stop_iteration (Envoy >= 1.35), which the control
//     plane sets with ModelRouting and only then;
//   - Context::decodeHeaders keeps the request headers for later callbacks
//     only when the filter does not continue, so the header can be set
//     from the body callback only because the headers are held;
//   - changing a request header clears the route cache
//     (Context::onHeadersModified; automatic for modules of ABI 0.2.1, as
//     this one is), and the router, which has not seen the headers yet,
//     selects the route anew with the header.
// Envoy refreshes the stream's route (the xds.route_name property) only
// when the router asks for it, after this filter; so the filter finds the
// route's fan-out settings through ModelRouting.RouteFor, the listener's
// model routes in match order.

// perModelMethods are the OIP methods whose request's field 1 is the model
// name and that a standard client calls: ModelInfer, and ModelReady and
// ModelMetadata before it.
var perModelMethods = [...]string{
	grpcPath,
	"/" + grpcService + "/ModelReady",
	"/" + grpcService + "/ModelMetadata",
}

// namesModel reports whether a gRPC request to path names its model in the
// message.
func namesModel(path string) bool {
	for _, p := range perModelMethods {
		if path == p {
			return true
		}
	}
	return false
}

// maxModelScan bounds how much of the body is held to find the model name:
// model_name is the first field of the first message.
const maxModelScan = 64 << 10

// deriveModel runs in the body callbacks while the headers are held. Until
// the model name is found it answers (ActionPause, true), which keeps the
// body buffered; then it sets the header, looks up the route Envoy will
// take and starts handling the request as OnHTTPRequestHeaders would have
// with the header, answering (action, true) if that settled the request or
// (_, false) to let the body callback carry on.
func (s *stream) deriveModel(bodySize int, endOfStream bool) (pw.Action, bool) {
	body, err := pw.GetHTTPRequestBody(0, min(bodySize, maxModelScan))
	if err != nil {
		pw.LogError("fanout: read request body: " + err.Error())
	}
	name, found := oip.FirstModelName(body)
	if !found && !endOfStream && bodySize < maxModelScan && err == nil {
		return pw.ActionPause, true
	}
	s.deriving = false
	routeName := s.routeName
	if mr := s.p.cfg.ModelRouting; name != "" {
		if err := pw.ReplaceHTTPRequestHeader(mr.Header, name); err != nil {
			pw.LogError("fanout: set " + mr.Header + ": " + err.Error())
		} else {
			routeName = mr.RouteFor(name, requestHeader)
		}
	} else {
		pw.LogDebug("fanout: no model name in the first " + strconv.Itoa(len(body)) + " bytes of " + s.path)
	}
	if a := s.begin(routeName, "POST", false); a != pw.ActionContinue {
		return a, true
	}
	return pw.ActionContinue, false
}

// requestHeader looks a request header up, for ModelRouting.RouteFor.
func requestHeader(name string) (string, bool) {
	v, err := pw.GetHTTPRequestHeader(name)
	return v, err == nil
}

// askPrimary rewrites a ModelReady or ModelMetadata request for an
// ensemble (name and version are fields 1 and 2, as in ModelInferRequest)
// to ask the primary member, where the route sends it, about its own
// model. A body it cannot read goes on unchanged, for the server to
// reject.
func (s *stream) askPrimary(bodySize int, endOfStream bool) pw.Action {
	if !endOfStream {
		return pw.ActionPause
	}
	body, err := pw.GetHTTPRequestBody(0, bodySize)
	if err != nil {
		pw.LogError("fanout: read request body: " + err.Error())
		return pw.ActionContinue
	}
	msg, err := oip.Unframe(body)
	if err != nil {
		return pw.ActionContinue
	}
	pm := &s.route.Members[s.route.PrimaryIndex()]
	out, err := oip.RewriteGRPCRequest(msg, pm.Model, pm.Version)
	if err != nil {
		return pw.ActionContinue
	}
	if err := pw.ReplaceHTTPRequestBody(oip.Frame(out)); err != nil {
		pw.LogError("fanout: rewrite request: " + err.Error())
	}
	return pw.ActionContinue
}
