package wasmhost

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// StreamOptions is what the embedder supplies for one stream.
type StreamOptions struct {
	// Properties answers proxy_get_property for this stream (after values
	// the filter set with proxy_set_property, before Config.Properties),
	// keyed by the path joined with "." ("route_name", "cluster_name",
	// "request.path"). Values are encoded as Envoy encodes them: strings
	// as their bytes, integers as 8-byte little-endian.
	Properties func(path string) ([]byte, bool)
	// OnRouteCacheCleared is called when the filter changes the request
	// headers (add, replace, remove, set pairs), where Envoy clears the
	// route cache so that the route is selected again. It runs inside the
	// guest call, with the VM busy: it must not call into the VM.
	OnRouteCacheCleared func()
}

// Stream is one HTTP stream's context in a VM. Its methods deliver one
// callback each, with the VM's lock held, like Envoy's worker thread, and
// return the guest's answer. How the host treats the answer follows
// cpp-host and Envoy: a pause from headers stops all iteration (unless
// Config.AllowOnHeadersStopIteration), so later body and trailers are held
// by the host and given to the filter only when it continues the stream.
type Stream struct {
	vm                        *VM
	id                        uint32
	opts                      StreamOptions
	reqHeaders, reqTrailers   [][2]string
	respHeaders, respTrailers [][2]string
	reqBody, respBody         []byte
	reqBuffering, respBuffer  bool // the previous body callback paused: keep buffering
	reqPaused, respPaused     bool
	reqStopAll, respStopAll   bool // stopped in headers with stop-all: data is held
	reqHeld, respHeld         held
	reqHeadersLive            bool // Envoy still holds the request headers
	respHeadersLive           bool
	reqTrailersLive           bool // in (or stopped in) the trailers callback
	respTrailersLive          bool
	reqLastBody, respLastBody bool // in the end-of-stream body callback
	reqBodyLive, respBodyLive bool // in the body callback or buffering after it
	inLog                     bool
	routeCacheCleared         bool
	local                     *LocalResponse
	reset                     bool
	done                      bool
	props                     map[string][]byte
}

// held is data that arrived while a direction was stopped with
// stop-all-iteration.
type held struct {
	body         []byte
	hasBody, end bool
	trailers     [][2]string
	hasTrailers  bool
}

// FailClosedResponse is what Envoy answers on a stream whose plugin VM has
// failed and is not fail-open (Context::failStream): 503 with an empty
// body, gRPC status UNAVAILABLE (14) for a gRPC request, response details
// "wasm_fail_stream".
func FailClosedResponse() *LocalResponse {
	return &LocalResponse{Status: 503, Details: "wasm_fail_stream", GRPCStatus: 14}
}

// Failed is the trap that failed the VM, nil while it is healthy. A failed
// VM runs no more guest code; streams are then answered per
// Config.FailOpen (pass through) or with FailClosedResponse.
func (vm *VM) Failed() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.trapped
}

// FailOpen reports the VM's failure policy (Config.FailOpen).
func (vm *VM) FailOpen() bool { return vm.cfg.FailOpen }

// NewStream creates a stream context (proxy_on_context_create) with no
// options.
//
// # Errors
// The VM has failed (ErrClosed) or the guest traps.
func (vm *VM) NewStream() (*Stream, error) { return vm.OpenStream(StreamOptions{}) }

// OpenStream creates a stream context (proxy_on_context_create).
//
// # Errors
// The VM has failed (ErrClosed; see Failed and FailOpen) or the guest
// traps.
func (vm *VM) OpenStream(opts StreamOptions) (*Stream, error) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	s := &Stream{vm: vm, id: vm.nextID, opts: opts}
	vm.nextID++
	vm.streams[s.id] = s
	if _, err := vm.call(expContextCreate, uint64(s.id), uint64(vm.rootID)); err != nil {
		delete(vm.streams, s.id)
		return nil, err
	}
	return s, nil
}

// ID is the stream's context id.
func (s *Stream) ID() uint32 { return s.id }

// SetProperty sets a property visible to this stream's callbacks, keyed by
// the dotted path ("request.path").
func (s *Stream) SetProperty(path string, value []byte) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	if s.props == nil {
		s.props = map[string][]byte{}
	}
	s.props[path] = value
}

// RouteCacheCleared reports whether the filter changed the request headers
// since the last call, and resets the report: the embedder then selects
// the route again, as Envoy does after clearRouteCache.
func (s *Stream) RouteCacheCleared() bool {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	c := s.routeCacheCleared
	s.routeCacheCleared = false
	return c
}

// callback runs one stream callback. On a VM that failed earlier it runs
// nothing: fail-open lets the stream continue, fail-closed answers it with
// FailClosedResponse and stops it, as cpp-host's CHECK_FAIL does. A trap
// in this callback fails the VM, answers the stream the same way and
// returns the error.
func (s *Stream) callback(id exportID, args ...uint64) (pw.Action, error) {
	vm := s.vm
	if vm.trapped != nil {
		if vm.cfg.FailOpen {
			return pw.ActionContinue, nil
		}
		s.failClosed()
		return pw.ActionPause, nil
	}
	vm.effective = s.id
	vm.stopNext = false
	// The context id before the arguments, in a stack array: callbacks
	// take at most three arguments, and this runs several times a request.
	var buf [4]uint64
	all := append(buf[:0], uint64(s.id))
	all = append(all, args...)
	r, err := vm.call(id, all...)
	if err != nil {
		if !vm.cfg.FailOpen {
			s.failClosed()
		}
		return pw.ActionPause, err
	}
	return pw.Action(r), nil
}

// nextBody is a direction's body as its next body callback sees it: the
// chunk appended to the buffered body while the filter buffers, else the
// chunk alone, copied unless the stream may keep it (capped then, so that
// an append by the filter copies rather than writes into the caller's
// array).
func nextBody(body, chunk []byte, buffering, keep bool) []byte {
	switch {
	case buffering:
		return append(body, chunk...)
	case keep:
		return chunk[:len(chunk):len(chunk)]
	}
	return append([]byte(nil), chunk...)
}

func (s *Stream) failClosed() {
	if s.local == nil {
		s.local = FailClosedResponse()
	}
}

// stops reports whether a callback's answer stops the stream: the guest
// paused, or sent a local response in the callback (cpp-host then turns
// any answer into a stop).
func (s *Stream) stops(a pw.Action) bool { return a != pw.ActionContinue || s.vm.stopNext }

func flag(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// RequestHeaders delivers proxy_on_request_headers.
func (s *Stream) RequestHeaders(headers [][2]string, endOfStream bool) (pw.Action, error) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.requestHeadersLocked(lower(headers), endOfStream)
}

// requestHeadersLocked delivers headers, which the stream keeps, with
// vm.mu held.
func (s *Stream) requestHeadersLocked(headers [][2]string, endOfStream bool) (pw.Action, error) {
	s.reqHeaders = headers
	s.reqHeadersLive = true
	a, err := s.callback(expRequestHeaders, uint64(len(s.reqHeaders)), flag(endOfStream))
	if err != nil {
		return a, err
	}
	if s.stops(a) {
		s.reqPaused = true
		s.reqStopAll = !s.vm.cfg.AllowOnHeadersStopIteration || s.vm.stopNext
	} else {
		s.reqHeadersLive = false
	}
	return a, s.vm.afterCall()
}

// RequestBody delivers one chunk with proxy_on_request_body. As in Envoy,
// while the previous body callback paused the chunk is appended to the
// buffered body and the callback sees the whole buffer's size; while the
// headers stopped all iteration the chunk is held, not delivered.
func (s *Stream) RequestBody(chunk []byte, endOfStream bool) (pw.Action, error) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.requestBodyLocked(chunk, endOfStream, false)
}

// requestBodyLocked delivers chunk with vm.mu held; with keep the stream
// keeps chunk itself rather than a copy.
func (s *Stream) requestBodyLocked(chunk []byte, endOfStream, keep bool) (pw.Action, error) {
	if s.reqPaused && s.reqStopAll {
		s.reqHeld.body = append(s.reqHeld.body, chunk...)
		s.reqHeld.hasBody, s.reqHeld.end = true, endOfStream
		return pw.ActionPause, nil
	}
	a, err := s.requestBody(chunk, endOfStream, keep)
	if err != nil {
		return a, err
	}
	return a, s.vm.afterCall()
}

func (s *Stream) requestBody(chunk []byte, endOfStream, keep bool) (pw.Action, error) {
	s.reqBody = nextBody(s.reqBody, chunk, s.reqBuffering, keep)
	s.reqLastBody, s.reqBodyLive = endOfStream, true
	a, err := s.callback(expRequestBody, uint64(len(s.reqBody)), flag(endOfStream))
	s.reqLastBody = false
	if err != nil {
		return a, err
	}
	s.reqBodyLive = a == pw.ActionPause
	s.reqBuffering = a == pw.ActionPause
	// As in Envoy, a data callback's answer decides: Continue resumes a
	// stream that an earlier callback stopped.
	s.reqPaused = s.stops(a)
	return a, nil
}

// RequestTrailers delivers proxy_on_request_trailers (held, like the body,
// while the headers stopped all iteration).
func (s *Stream) RequestTrailers(trailers [][2]string) (pw.Action, error) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.requestTrailersLocked(lower(trailers))
}

// requestTrailersLocked delivers trailers, which the stream keeps, with
// vm.mu held.
func (s *Stream) requestTrailersLocked(trailers [][2]string) (pw.Action, error) {
	if s.reqPaused && s.reqStopAll {
		s.reqHeld.trailers, s.reqHeld.hasTrailers = trailers, true
		return pw.ActionPause, nil
	}
	a, err := s.requestTrailers(trailers)
	if err != nil {
		return a, err
	}
	return a, s.vm.afterCall()
}

func (s *Stream) requestTrailers(trailers [][2]string) (pw.Action, error) {
	s.reqTrailers = trailers
	s.reqTrailersLive = true
	a, err := s.callback(expRequestTrailers, uint64(len(s.reqTrailers)))
	if err != nil {
		return a, err
	}
	s.reqPaused = s.stops(a)
	s.reqTrailersLive = s.reqPaused
	return a, nil
}

// ResponseHeaders delivers proxy_on_response_headers; headers should
// include ":status".
func (s *Stream) ResponseHeaders(headers [][2]string, endOfStream bool) (pw.Action, error) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.responseHeadersLocked(lower(headers), endOfStream)
}

func (s *Stream) responseHeadersLocked(headers [][2]string, endOfStream bool) (pw.Action, error) {
	s.respHeaders = headers
	s.respHeadersLive = true
	a, err := s.callback(expResponseHeaders, uint64(len(s.respHeaders)), flag(endOfStream))
	if err != nil {
		return a, err
	}
	if s.stops(a) {
		s.respPaused = true
		s.respStopAll = !s.vm.cfg.AllowOnHeadersStopIteration || s.vm.stopNext
	} else {
		s.respHeadersLive = false
	}
	return a, s.vm.afterCall()
}

// ResponseBody delivers one chunk with proxy_on_response_body, buffering
// and holding like RequestBody.
func (s *Stream) ResponseBody(chunk []byte, endOfStream bool) (pw.Action, error) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.responseBodyLocked(chunk, endOfStream, false)
}

func (s *Stream) responseBodyLocked(chunk []byte, endOfStream, keep bool) (pw.Action, error) {
	if s.respPaused && s.respStopAll {
		s.respHeld.body = append(s.respHeld.body, chunk...)
		s.respHeld.hasBody, s.respHeld.end = true, endOfStream
		return pw.ActionPause, nil
	}
	a, err := s.responseBody(chunk, endOfStream, keep)
	if err != nil {
		return a, err
	}
	return a, s.vm.afterCall()
}

func (s *Stream) responseBody(chunk []byte, endOfStream, keep bool) (pw.Action, error) {
	s.respBody = nextBody(s.respBody, chunk, s.respBuffer, keep)
	s.respLastBody, s.respBodyLive = endOfStream, true
	a, err := s.callback(expResponseBody, uint64(len(s.respBody)), flag(endOfStream))
	s.respLastBody = false
	if err != nil {
		return a, err
	}
	s.respBodyLive = a == pw.ActionPause
	s.respBuffer = a == pw.ActionPause
	s.respPaused = s.stops(a) // as for the request
	return a, nil
}

// ResponseTrailers delivers proxy_on_response_trailers.
func (s *Stream) ResponseTrailers(trailers [][2]string) (pw.Action, error) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.responseTrailersLocked(lower(trailers))
}

func (s *Stream) responseTrailersLocked(trailers [][2]string) (pw.Action, error) {
	if s.respPaused && s.respStopAll {
		s.respHeld.trailers, s.respHeld.hasTrailers = trailers, true
		return pw.ActionPause, nil
	}
	a, err := s.responseTrailers(trailers)
	if err != nil {
		return a, err
	}
	return a, s.vm.afterCall()
}

func (s *Stream) responseTrailers(trailers [][2]string) (pw.Action, error) {
	s.respTrailers = trailers
	s.respTrailersLive = true
	a, err := s.callback(expResponseTrailers, uint64(len(s.respTrailers)))
	if err != nil {
		return a, err
	}
	s.respPaused = s.stops(a)
	s.respTrailersLive = s.respPaused
	return a, nil
}

// afterCall runs what Envoy defers until a guest call returns: a stream
// the guest continued (proxy_continue_stream) after stopping all iteration
// gets the body and trailers held meanwhile, in one body callback.
func (vm *VM) afterCall() error {
	for len(vm.resumed) > 0 {
		s := vm.resumed[0]
		vm.resumed = vm.resumed[1:]
		if err := s.releaseHeld(); err != nil {
			return err
		}
	}
	return nil
}

func (s *Stream) releaseHeld() error {
	if s.done || s.local != nil || s.reset {
		return nil
	}
	if s.reqStopAll && !s.reqPaused {
		s.reqStopAll = false
		h := s.reqHeld
		s.reqHeld = held{}
		if h.hasBody {
			if _, err := s.requestBody(h.body, h.end && !h.hasTrailers, true); err != nil {
				return err
			}
		}
		if h.hasTrailers && s.local == nil {
			if _, err := s.requestTrailers(h.trailers); err != nil {
				return err
			}
		}
	}
	if s.respStopAll && !s.respPaused {
		s.respStopAll = false
		h := s.respHeld
		s.respHeld = held{}
		if h.hasBody {
			if _, err := s.responseBody(h.body, h.end && !h.hasTrailers, true); err != nil {
				return err
			}
		}
		if h.hasTrailers && s.local == nil {
			if _, err := s.responseTrailers(h.trailers); err != nil {
				return err
			}
		}
	}
	return nil
}

// Done ends the stream as Envoy does: proxy_on_log (the access-log
// handler runs before the filters are destroyed), then proxy_on_done and
// proxy_on_delete. On a failed VM nothing runs. Calling it twice is a
// no-op.
func (s *Stream) Done() error {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	if s.done {
		return nil
	}
	s.done = true
	defer delete(s.vm.streams, s.id)
	if s.vm.trapped != nil {
		return nil
	}
	s.inLog = true
	_, err := s.callback(expLog)
	s.inLog = false
	if err != nil {
		return err
	}
	for _, id := range []exportID{expDone, expDelete} {
		if _, err := s.callback(id); err != nil {
			return err
		}
	}
	return nil
}

// Paused reports whether the request (or response) direction is stopped
// and not yet resumed with proxy_continue_stream.
func (s *Stream) Paused(response bool) bool {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	if response {
		return s.respPaused
	}
	return s.reqPaused
}

// Holding reports whether the host holds body or trailers of a direction
// stopped with stop-all-iteration, not yet given to the filter.
func (s *Stream) Holding(response bool) bool {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	h := s.reqHeld
	if response {
		h = s.respHeld
	}
	return h.hasBody || h.hasTrailers
}

// LocalResponse is the local response the filter sent (or the host's
// FailClosedResponse), or nil.
func (s *Stream) LocalResponse() *LocalResponse {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.local
}

// RequestHeaderMap is the request headers as the filter left them.
func (s *Stream) RequestHeaderMap() [][2]string {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return append([][2]string(nil), s.reqHeaders...)
}

// RequestBodyBytes is the (buffered) request body as the filter left it.
func (s *Stream) RequestBodyBytes() []byte {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return append([]byte(nil), s.reqBody...)
}

// ResponseHeaderMap is the response headers as the filter left them.
func (s *Stream) ResponseHeaderMap() [][2]string {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return append([][2]string(nil), s.respHeaders...)
}

// ResponseTrailerMap is the response trailers as the filter left them (a
// gRPC filter sets grpc-status and its report there).
func (s *Stream) ResponseTrailerMap() [][2]string {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return append([][2]string(nil), s.respTrailers...)
}

// ResponseBodyBytes is the (buffered) response body as the filter left it.
func (s *Stream) ResponseBodyBytes() []byte {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return append([]byte(nil), s.respBody...)
}

// AwaitResume delivers callout answers until the direction is resumed or
// the filter answered locally.
//
// # Errors
// ErrStalled when it stays paused with no callout in flight (a filter
// waiting for a body that stop-all-iteration holds back stalls here); ctx
// ends.
func (s *Stream) AwaitResume(ctx context.Context, response bool) error {
	vm := s.vm
	for {
		vm.mu.Lock()
		paused := s.reqPaused
		if response {
			paused = s.respPaused
		}
		settled := !paused || s.local != nil || s.reset
		inflight, progress := vm.inflight, vm.progress
		vm.mu.Unlock()
		if settled {
			return nil
		}
		if inflight == 0 {
			return fmt.Errorf("stream %d: %w", s.id, ErrStalled)
		}
		if err := vm.deliverNext(ctx, progress); err != nil {
			return err
		}
	}
}

// lower copies a header map with lower-case names, with room for the
// few headers a filter adds (a budget header, a model header) without
// growing the copy.
func lower(h [][2]string) [][2]string {
	out := make([][2]string, len(h), len(h)+headroom)
	for i, kv := range h {
		out[i] = [2]string{strings.ToLower(kv[0]), kv[1]}
	}
	return out
}

const headroom = 2

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func itoa(n int) string { return strconv.Itoa(n) }
