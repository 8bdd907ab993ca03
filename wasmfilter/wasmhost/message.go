package wasmhost

// An embedder that buffers whole messages (the gateway's router holds each
// request and response whole before its filters see it) delivers each
// direction with one call and reads the outcome with another, instead of
// a call per callback and per accessor: each of those takes the VM's lock,
// and every accessor copies. The callbacks, their order and their answers'
// meanings are those of RequestHeaders, RequestBody, RequestTrailers and
// their response counterparts.
//
// The stream keeps the lists and bodies it is given, and the results are
// the stream's own: neither side may change them in place. The host never
// does (a filter's edits replace a list or body, or append past a capped
// one), so the results stay as the filter left them once the direction has
// continued.

// Request delivers a whole request as Envoy's codec hands a buffered one to
// the filter: proxy_on_request_headers (end of stream when there is
// nothing more), then, unless the filter has answered locally, the body in
// one proxy_on_request_body and the trailers in proxy_on_request_trailers,
// the last one with end of stream. The stream keeps headers, body and
// trailers; they must not change until the stream is done.
//
// # Errors
// A callback traps (the VM has failed; see Failed and FailOpen).
func (s *Stream) Request(headers [][2]string, body []byte, trailers [][2]string) error {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	hasBody, hasTrailers := len(body) > 0, len(trailers) > 0
	if _, err := s.requestHeadersLocked(keepLower(headers), !hasBody && !hasTrailers); err != nil {
		return err
	}
	if hasBody && s.local == nil {
		if _, err := s.requestBodyLocked(body, !hasTrailers, true); err != nil {
			return err
		}
	}
	if hasTrailers && s.local == nil {
		if _, err := s.requestTrailersLocked(keepLower(trailers)); err != nil {
			return err
		}
	}
	return nil
}

// Response delivers a whole response as Request delivers a request:
// proxy_on_response_headers, proxy_on_response_body with the body and
// proxy_on_response_trailers, each present part in that order, the last
// with end of stream. The stream keeps what it is given.
//
// # Errors
// A callback traps.
func (s *Stream) Response(headers [][2]string, body []byte, trailers [][2]string) error {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	hasBody, hasTrailers := len(body) > 0, len(trailers) > 0
	if _, err := s.responseHeadersLocked(keepLower(headers), !hasBody && !hasTrailers); err != nil {
		return err
	}
	if hasBody {
		if _, err := s.responseBodyLocked(body, !hasTrailers, true); err != nil {
			return err
		}
	}
	if hasTrailers {
		if _, err := s.responseTrailersLocked(keepLower(trailers)); err != nil {
			return err
		}
	}
	return nil
}

// RequestResult is the request's headers and body as the filter left
// them, and its local response (nil if none), read together. The lists are
// the stream's, capped: an append copies them.
func (s *Stream) RequestResult() (headers [][2]string, body []byte, local *LocalResponse) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return capped(s.reqHeaders), s.reqBody[:len(s.reqBody):len(s.reqBody)], s.local
}

// ResponseResult is the response's headers, body and trailers as the
// filter left them, and the stream's local response (nil if none), as
// RequestResult reads them.
func (s *Stream) ResponseResult() (headers [][2]string, body []byte, trailers [][2]string, local *LocalResponse) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return capped(s.respHeaders), s.respBody[:len(s.respBody):len(s.respBody)], capped(s.respTrailers), s.local
}

func capped(h [][2]string) [][2]string { return h[:len(h):len(h)] }

// keepLower is h itself, capped, when its names are lower-case ASCII
// already (a filter's added header then copies it), else lower's copy.
func keepLower(h [][2]string) [][2]string {
	for _, kv := range h {
		if !isLowerASCII(kv[0]) {
			return lower(h)
		}
	}
	return capped(h)
}

func isLowerASCII(s string) bool {
	for i := range len(s) {
		if c := s[i]; 'A' <= c && c <= 'Z' || c >= 0x80 {
			return false
		}
	}
	return true
}
