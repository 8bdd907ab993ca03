package router

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/maestro-ml/maestro/internal/gateway/h2"
	"github.com/maestro-ml/maestro/internal/gateway/upstream"
)

// A buffered attempt over the h2 transport (the common case: a gRPC or
// REST request through the filter chain to an h2c cluster) goes as lists:
// the request's fields straight from the Message, the answer's back into
// one, with no http.Request, URL, header maps or canonical names between.
// Its results are those of the map path (attempt).

// listBuf is an upstream list request and its header list, pooled: the
// transport has encoded the headers when RoundTripList returns.
type listBuf struct {
	req    h2.ListRequest
	header [][2]string
}

// listRequest builds t's request for the list path into a pooled buffer,
// or returns nil when the method or path is one the map path's
// http.NewRequest would refuse (that path then answers as it always has).
func (h *Handler) listRequest(scheme string, t try) *listBuf {
	req := t.req
	method, _ := req.Get(":method")
	path, _ := req.Get(":path")
	authority, _ := req.Get(":authority")
	if !validMethod(method) || !validPath(path) {
		return nil
	}
	lb, _ := h.lists.Get().(*listBuf)
	if lb == nil {
		lb = &listBuf{}
	}
	hs := lb.header[:0]
	for _, kv := range req.Headers {
		switch {
		case len(kv[0]) > 0 && kv[0][0] == ':', kv[0] == "content-length",
			kv[0] == "x-request-id", kv[0] == "x-forwarded-proto", kv[0] == "x-envoy-expected-rq-timeout-ms":
			continue
		}
		hs = append(hs, kv)
	}
	hs = append(hs, [2]string{"x-request-id", t.reqID}, [2]string{"x-forwarded-proto", "http"})
	if t.timeout > 0 {
		hs = append(hs, [2]string{"x-envoy-expected-rq-timeout-ms", h.millis(t.timeout)})
	}
	lb.header = hs
	lb.req = h2.ListRequest{Method: method, Scheme: scheme, Authority: authority, Path: path, Header: hs, Body: req.Body}
	return lb
}

// millisText is a route timeout and its header value.
type millisText struct {
	d    time.Duration
	text string
}

// millis is d in whole milliseconds as text, kept for the last timeout
// asked for: a route's timeout goes out on every request, and above 99 ms
// formatting it allocates.
func (h *Handler) millis(d time.Duration) string {
	if m := h.lastMillis.Load(); m != nil && m.d == d {
		return m.text
	}
	m := &millisText{d: d, text: strconv.FormatInt(d.Milliseconds(), 10)}
	h.lastMillis.Store(m)
	return m.text
}

func (h *Handler) putList(lb *listBuf) {
	clear(lb.header)
	lb.header = lb.header[:0]
	lb.req = h2.ListRequest{}
	h.lists.Put(lb)
}

// validMethod is http.NewRequest's check: a token.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := range len(m) {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

// validPath accepts the paths that go to the map path's http.NewRequest
// and out of its URL unchanged: an absolute path of characters a URL path
// never escapes, and a query of visible ASCII but '#'. A filter's other
// paths (escapes, fragments, "*", non-ASCII) go by the map path, which
// answers them as it always has.
func validPath(p string) bool {
	if len(p) == 0 || p[0] != '/' || len(p) > 1 && p[1] == '/' {
		return false
	}
	query := false
	for i := range len(p) {
		c := p[i]
		switch {
		case c == '?':
			query = true
		case query:
			if c <= ' ' || c >= 0x7f || c == '#' {
				return false
			}
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// attemptList is attempt for a list request lb, whose buffer it frees.
func (h *Handler) attemptList(ctx, tryCtx context.Context, tr *h2.Transport, lb *listBuf, t try) (bool, *Message, int, failure, error) {
	c, host := t.c, t.host
	start := time.Now()
	c.Stats.RqTotal.Inc()
	resp, err := tr.RoundTripList(tryCtx, host.Addr, &lb.req)
	h.putList(lb)
	if err != nil {
		return false, nil, 0, roundTripFailure(ctx, tryCtx, c, host, err), err
	}
	gs := -1
	if resp.Status == http.StatusOK {
		gs = listGRPCStatus(resp.Header)
	}
	if h.retried(t, start, resp.Status, gs, resp.Body) {
		return true, nil, 0, 0, nil
	}
	m, err := readListResponse(resp, c, host, start)
	return bufferedResult(ctx, tryCtx, start, m, err)
}

// readListResponse is readResponse for a list response.
func readListResponse(resp *h2.ListResponse, c *upstream.Cluster, host *upstream.Host, start time.Time) (*Message, error) {
	defer resp.Body.Close()
	body, err := readAtMost(resp.Body, maxResponse)
	if err != nil {
		c.Report(host, http.StatusServiceUnavailable)
		return nil, err
	}
	// Room for :status and the x-envoy-upstream-service-time the router
	// adds.
	hs := make([][2]string, 0, len(resp.Header)+2)
	hs = append(hs, [2]string{":status", statusText(resp.Status)})
	for _, kv := range resp.Header {
		if !hopByHop[kv[0]] {
			hs = append(hs, kv)
		}
	}
	m := &Message{Headers: hs, Body: body, Trailers: resp.Trailers()}
	c.Stats.Response(resp.Status, time.Since(start))
	effective := resp.Status
	if resp.Status == http.StatusOK {
		gs := listGRPCStatus(m.Trailers)
		if gs < 0 {
			gs = listGRPCStatus(resp.Header)
		}
		if gs >= 0 {
			effective = grpcToHTTP(gs)
		}
	}
	c.Report(host, effective)
	return m, nil
}

// listGRPCStatus is grpcStatus for a field list.
func listGRPCStatus(fs [][2]string) int {
	for _, kv := range fs {
		if kv[0] == "grpc-status" {
			if kv[1] == "" {
				return -1
			}
			gs, _ := strconv.Atoi(kv[1])
			return gs
		}
	}
	return -1
}

func statusText(code int) string {
	if code == http.StatusOK {
		return "200"
	}
	return strconv.Itoa(code)
}
