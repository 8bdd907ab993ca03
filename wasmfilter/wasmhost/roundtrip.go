package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
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
		if failed := vm.Failed(); failed != nil && errors.Is(err, ErrClosed) {
			return vm.failedRoundTrip(ctx, cluster, req)
		}
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
	out := &Request{Headers: append([][2]string(nil), s.reqHeaders...), Body: append([]byte(nil), s.reqBody...),
		Trailers: append([][2]string(nil), s.reqTrailers...)}
	vm.mu.Unlock()
	if local != nil {
		return localToResponse(local, isGRPC(out.Headers)), nil
	}
	if !vm.upstreams.HasCluster(cluster) {
		return nil, fmt.Errorf("round trip: unknown cluster %q", cluster)
	}
	resp, err := vm.upstreams.HTTP(ctx, cluster, out)
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
		return localToResponse(s.local, isGRPC(s.reqHeaders)), nil
	}
	resp := &Response{Headers: append([][2]string(nil), s.respHeaders...), Body: append([]byte(nil), s.respBody...),
		Trailers: append([][2]string(nil), s.respTrailers...), Local: up.Local}
	code, _ := headerValue(resp.Headers, ":status")
	resp.Status, _ = strconv.Atoi(code)
	return resp, nil
}

// failedRoundTrip answers a request on a failed VM as Envoy does: without
// the filter when fail-open, with FailClosedResponse otherwise.
func (vm *VM) failedRoundTrip(ctx context.Context, cluster string, req Request) (*Response, error) {
	if !vm.cfg.FailOpen {
		return localToResponse(FailClosedResponse(), isGRPC(req.Headers)), nil
	}
	headers := append([][2]string{{":method", or(req.Method, "GET")}, {":path", or(req.Path, "/")},
		{":authority", or(req.Authority, cluster)}}, lower(req.Headers)...)
	resp, err := vm.upstreams.HTTP(ctx, cluster, &Request{Headers: headers, Body: req.Body, Trailers: lower(req.Trailers)})
	if err != nil {
		return nil, fmt.Errorf("round trip to cluster %q: %w", cluster, err)
	}
	return resp, nil
}

// localToResponse renders a local reply as Envoy's sendLocalReply does.
// To a gRPC request it is a trailers-only gRPC response: HTTP 200,
// grpc-status (the given one, else mapped from the HTTP status) and the
// body as grpc-message, no body. Otherwise the status and body as given.
func localToResponse(l *LocalResponse, grpcRequest bool) *Response {
	if grpcRequest {
		code := l.GRPCStatus
		if code < 0 {
			code = httpToGRPCStatus(l.Status)
		}
		h := [][2]string{{":status", "200"}, {"content-type", "application/grpc"}}
		h = append(h, lower(l.Headers)...)
		h = replaceHeader(h, "grpc-status", strconv.Itoa(int(code)))
		if len(l.Body) > 0 {
			h = replaceHeader(h, "grpc-message", url.PathEscape(string(l.Body)))
		}
		return &Response{Status: 200, Headers: h, Local: l}
	}
	h := [][2]string{{":status", strconv.Itoa(l.Status)}}
	h = append(h, lower(l.Headers)...)
	return &Response{Status: l.Status, Headers: h, Body: append([]byte(nil), l.Body...), Local: l}
}

// isGRPC is Envoy's Grpc::Common::isGrpcRequestHeaders test.
func isGRPC(headers [][2]string) bool {
	ct, _ := headerValue(headers, "content-type")
	return strings.HasPrefix(ct, "application/grpc")
}

// httpToGRPCStatus is Envoy's Grpc::Utility::httpToGrpcStatus.
func httpToGRPCStatus(status int) int32 {
	switch status {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}
