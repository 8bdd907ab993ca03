package wasmhost

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// Request is a downstream request for RoundTrip. Method, Path and
// Authority become the ":method", ":path" and ":authority" pseudo-headers.
type Request struct {
	Method, Path, Authority string
	Headers                 [][2]string
	Body                    []byte
	Trailers                [][2]string
	// ChunkSize, if positive, delivers Body in chunks of at most this many
	// bytes, one body callback each, as Envoy does with a body that spans
	// several data frames; zero delivers it in one.
	ChunkSize int
}

// Response is what the downstream client receives.
type Response struct {
	Status   int
	Headers  [][2]string // including ":status"
	Body     []byte
	Trailers [][2]string
	// Local is the filter's local response, when it sent one.
	Local *LocalResponse
}

// Header returns the first value of a response header.
func (r *Response) Header(key string) string {
	v, _ := headerValue(r.Headers, key)
	return v
}

// Trailer returns the first value of a response trailer.
func (r *Response) Trailer(key string) string {
	v, _ := headerValue(r.Trailers, key)
	return v
}

// LocalResponse is a proxy_send_local_response call.
type LocalResponse struct {
	Status     int
	Details    string
	Headers    [][2]string
	Body       []byte
	GRPCStatus int32 // -1: not a gRPC reply
}

// Stream is one HTTP stream's context in a VM. Its methods deliver one
// callback each, with the VM's lock held, like Envoy's worker thread.
type Stream struct {
	vm                        *VM
	id                        uint32
	reqHeaders, reqTrailers   [][2]string
	respHeaders, respTrailers [][2]string
	reqBody, respBody         []byte
	reqBuffering, respBuffer  bool // the previous body callback paused: keep buffering
	reqPaused, respPaused     bool
	local                     *LocalResponse
	reset                     bool
	done                      bool
	props                     map[string][]byte
}

// NewStream creates a stream context (proxy_on_context_create).
//
// # Errors
// The guest traps.
func (vm *VM) NewStream() (*Stream, error) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	s := &Stream{vm: vm, id: vm.nextID, props: map[string][]byte{}}
	vm.nextID++
	vm.streams[s.id] = s
	if _, err := vm.call("proxy_on_context_create", uint64(s.id), uint64(vm.rootID)); err != nil {
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
	s.props[path] = value
}

func (s *Stream) callback(name string, args ...uint64) (pw.Action, error) {
	vm := s.vm
	vm.effective = s.id
	r, err := vm.call(name, append([]uint64{uint64(s.id)}, args...)...)
	return pw.Action(r), err
}

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
	s.reqHeaders = lower(headers)
	a, err := s.callback("proxy_on_request_headers", uint64(len(s.reqHeaders)), flag(endOfStream))
	s.reqPaused = s.reqPaused || a == pw.ActionPause
	return a, err
}

// RequestBody delivers one chunk with proxy_on_request_body. As in Envoy,
// while the previous body callback paused the chunk is appended to the
// buffered body and the callback sees the whole buffer's size.
func (s *Stream) RequestBody(chunk []byte, endOfStream bool) (pw.Action, error) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	if s.reqBuffering {
		s.reqBody = append(s.reqBody, chunk...)
	} else {
		s.reqBody = append([]byte(nil), chunk...)
	}
	a, err := s.callback("proxy_on_request_body", uint64(len(s.reqBody)), flag(endOfStream))
	s.reqBuffering = a == pw.ActionPause
	// As in Envoy, a data callback's answer decides: Continue resumes a
	// stream that an earlier callback stopped.
	s.reqPaused = a == pw.ActionPause
	return a, err
}

// RequestTrailers delivers proxy_on_request_trailers.
func (s *Stream) RequestTrailers(trailers [][2]string) (pw.Action, error) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	s.reqTrailers = lower(trailers)
	a, err := s.callback("proxy_on_request_trailers", uint64(len(s.reqTrailers)))
	s.reqPaused = a == pw.ActionPause
	return a, err
}

// ResponseHeaders delivers proxy_on_response_headers; headers should
// include ":status".
func (s *Stream) ResponseHeaders(headers [][2]string, endOfStream bool) (pw.Action, error) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	s.respHeaders = lower(headers)
	a, err := s.callback("proxy_on_response_headers", uint64(len(s.respHeaders)), flag(endOfStream))
	s.respPaused = s.respPaused || a == pw.ActionPause
	return a, err
}

// ResponseBody delivers one chunk with proxy_on_response_body, buffering
// like RequestBody.
func (s *Stream) ResponseBody(chunk []byte, endOfStream bool) (pw.Action, error) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	if s.respBuffer {
		s.respBody = append(s.respBody, chunk...)
	} else {
		s.respBody = append([]byte(nil), chunk...)
	}
	a, err := s.callback("proxy_on_response_body", uint64(len(s.respBody)), flag(endOfStream))
	s.respBuffer = a == pw.ActionPause
	s.respPaused = a == pw.ActionPause // as for the request
	return a, err
}

// ResponseTrailers delivers proxy_on_response_trailers.
func (s *Stream) ResponseTrailers(trailers [][2]string) (pw.Action, error) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	s.respTrailers = lower(trailers)
	a, err := s.callback("proxy_on_response_trailers", uint64(len(s.respTrailers)))
	s.respPaused = a == pw.ActionPause
	return a, err
}

// Done ends the stream as Envoy does: proxy_on_done, proxy_on_log,
// proxy_on_delete. Calling it twice is a no-op.
func (s *Stream) Done() error {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	if s.done {
		return nil
	}
	s.done = true
	defer delete(s.vm.streams, s.id)
	for _, name := range []string{"proxy_on_done", "proxy_on_log", "proxy_on_delete"} {
		if _, err := s.callback(name); err != nil {
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

// LocalResponse is the local response the filter sent, or nil.
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
// ErrStalled when it stays paused with no callout in flight; ctx ends.
func (s *Stream) AwaitResume(ctx context.Context, response bool) error {
	vm := s.vm
	for {
		vm.mu.Lock()
		paused := s.reqPaused
		if response {
			paused = s.respPaused
		}
		settled := !paused || s.local != nil || s.reset
		inflight := vm.inflight
		vm.mu.Unlock()
		if settled {
			return nil
		}
		if inflight == 0 {
			return fmt.Errorf("stream %d: %w", s.id, ErrStalled)
		}
		if err := vm.deliverNext(ctx); err != nil {
			return err
		}
	}
}

// RoundTrip runs one request through the filter the way Envoy would, with
// the real server of cluster as the upstream: request callbacks, waiting
// while paused (callouts are delivered meanwhile), then the upstream
// exchange unless the filter answered locally, then the response callbacks
// (a local response passes through them too, as in Envoy), then the
// end-of-stream callbacks. It returns what the client would receive.
//
// # Errors
// The upstream is unreachable, a callback traps, the stream stalls, or ctx
// ends.
func (vm *VM) RoundTrip(ctx context.Context, cluster string, req Request) (resp *Response, err error) {
	s, err := vm.NewStream()
	if err != nil {
		return nil, err
	}
	defer func() {
		// The end-of-stream callbacks run whatever happened; a trap in them
		// fails the round trip.
		if derr := s.Done(); derr != nil && err == nil {
			resp, err = nil, derr
		}
	}()
	headers := append([][2]string{{":method", or(req.Method, "GET")}, {":path", or(req.Path, "/")},
		{":authority", or(req.Authority, cluster)}}, req.Headers...)
	hasBody, hasTrailers := len(req.Body) > 0, len(req.Trailers) > 0
	if _, err := s.RequestHeaders(headers, !hasBody && !hasTrailers); err != nil {
		return nil, err
	}
	for rest := req.Body; len(rest) > 0 && s.LocalResponse() == nil; {
		n := len(rest)
		if req.ChunkSize > 0 {
			n = min(n, req.ChunkSize)
		}
		if _, err := s.RequestBody(rest[:n], n == len(rest) && !hasTrailers); err != nil {
			return nil, err
		}
		rest = rest[n:]
	}
	if hasTrailers && s.LocalResponse() == nil {
		if _, err := s.RequestTrailers(req.Trailers); err != nil {
			return nil, err
		}
	}
	if err := s.AwaitResume(ctx, false); err != nil {
		return nil, err
	}
	upstream, err := s.upstream(ctx, cluster)
	if err != nil {
		return nil, err
	}
	return s.respond(ctx, upstream)
}

// upstream is the response before the filter's response callbacks: the
// local one, or the real server's.
func (s *Stream) upstream(ctx context.Context, cluster string) (*Response, error) {
	vm := s.vm
	vm.mu.Lock()
	local := s.local
	c, ok := vm.cfg.Clusters[cluster]
	out := Request{Headers: append([][2]string(nil), s.reqHeaders...), Body: append([]byte(nil), s.reqBody...),
		Trailers: append([][2]string(nil), s.reqTrailers...)}
	vm.mu.Unlock()
	if local != nil {
		return localToResponse(local), nil
	}
	if !ok {
		return nil, fmt.Errorf("round trip: unknown cluster %q", cluster)
	}
	resp, err := forward(ctx, vm.client(c), c.Address, out)
	if err != nil {
		return nil, fmt.Errorf("round trip to cluster %q: %w", cluster, err)
	}
	return resp, nil
}

func (s *Stream) respond(ctx context.Context, up *Response) (*Response, error) {
	hasBody, hasTrailers := len(up.Body) > 0, len(up.Trailers) > 0
	if _, err := s.ResponseHeaders(up.Headers, !hasBody && !hasTrailers); err != nil {
		return nil, err
	}
	if hasBody {
		if _, err := s.ResponseBody(up.Body, !hasTrailers); err != nil {
			return nil, err
		}
	}
	if hasTrailers {
		if _, err := s.ResponseTrailers(up.Trailers); err != nil {
			return nil, err
		}
	}
	if err := s.AwaitResume(ctx, true); err != nil {
		return nil, err
	}
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	if s.local != nil && up.Local == nil {
		// A local reply sent while handling the upstream response replaces it.
		return localToResponse(s.local), nil
	}
	resp := &Response{Headers: append([][2]string(nil), s.respHeaders...), Body: append([]byte(nil), s.respBody...),
		Trailers: append([][2]string(nil), s.respTrailers...), Local: up.Local}
	code, _ := headerValue(resp.Headers, ":status")
	resp.Status, _ = strconv.Atoi(code)
	return resp, nil
}

func localToResponse(l *LocalResponse) *Response {
	h := [][2]string{{":status", strconv.Itoa(l.Status)}}
	h = append(h, lower(l.Headers)...)
	if l.GRPCStatus >= 0 {
		h = replaceHeader(h, "grpc-status", strconv.Itoa(int(l.GRPCStatus)))
	}
	return &Response{Status: l.Status, Headers: h, Body: append([]byte(nil), l.Body...), Local: l}
}

func lower(h [][2]string) [][2]string {
	out := make([][2]string, len(h))
	for i, kv := range h {
		out[i] = [2]string{strings.ToLower(kv[0]), kv[1]}
	}
	return out
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
