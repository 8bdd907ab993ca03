package h2

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http2/hpack"
)

// ListRequest is a request held as lists, as a buffering proxy holds one:
// the header fields in order with lower-case names and no pseudo-headers,
// and the whole body. RoundTripList sends it without the http.Request, URL
// and header map RoundTrip needs, and answers with lists as well.
type ListRequest struct {
	Method, Scheme, Authority, Path string
	Header                          [][2]string
	// Body is sent as it is; it must not change until the response ends.
	Body []byte
}

// ListResponse is the answer to a ListRequest: its status and header
// fields in order (lower-case names, no pseudo-headers); the body streams
// from Body, and Trailers has the trailers once Body has returned io.EOF.
type ListResponse struct {
	Status int
	Header [][2]string
	Body   io.ReadCloser
	cs     *clientStream
}

// Trailers is the response's trailer fields (nil if none), complete once
// Body has returned io.EOF.
func (r *ListResponse) Trailers() [][2]string {
	cc := r.cs.cc
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return r.cs.trailers
}

// RoundTripList sends req to addr (host:port) and returns when the
// response headers have come; the body streams after. ctx bounds the
// whole exchange, body included. Connections are those of RoundTrip.
func (t *Transport) RoundTripList(ctx context.Context, addr string, req *ListRequest) (*ListResponse, error) {
	for range 3 {
		cc, err := t.conn(ctx, addr)
		if err != nil {
			return nil, err
		}
		cs, err := cc.exchange(ctx, nil, req, req.Body, true)
		if errors.Is(err, errConnUnusable) {
			continue // it went away between the pick and the stream
		}
		if err != nil {
			return nil, err
		}
		return &cs.lresp, nil
	}
	return nil, ErrStreamRefused
}

// encodeList encodes a list request's header block with the rules
// encodeRequest applies to a header map.
func (cc *clientConn) encodeList(req *ListRequest) []byte {
	cc.hbuf.Reset()
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	scheme := req.Scheme
	if scheme == "" {
		scheme = "http"
	}
	write := func(k, v string) {
		// As encodeRequest: a request id is never indexed.
		_ = cc.henc.WriteField(hpack.HeaderField{Name: k, Value: v, Sensitive: k == "x-request-id"})
	}
	write(":method", method)
	write(":scheme", scheme)
	authority := req.Authority
	if authority == "" {
		authority = cc.addr // as RoundTrip falls back to the URL's host
	}
	write(":authority", authority)
	write(":path", req.Path)
	for _, kv := range req.Header {
		name := kv[0]
		if !isLower(name) {
			name = strings.ToLower(name)
		}
		if connectionSpecific(name) || name == "host" || name == "content-length" || (name == "te" && kv[1] != "trailers") {
			continue
		}
		write(name, kv[1])
	}
	if len(req.Body) > 0 || (method != http.MethodGet && method != http.MethodHead) {
		write("content-length", strconv.Itoa(len(req.Body)))
	}
	return cc.hbuf.Bytes()
}

// fieldList copies a header block's regular fields into a list; the
// frame reader reuses its field slice for the next block.
func fieldList(fs []hpack.HeaderField) [][2]string {
	out := make([][2]string, len(fs))
	for i, f := range fs {
		out[i] = [2]string{f.Name, f.Value}
	}
	return out
}
