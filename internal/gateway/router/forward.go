package router

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/maestro-ml/maestro/internal/gateway/h2"
	"github.com/maestro-ml/maestro/internal/gateway/upstream"
	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

// Envoy's default retry back-off: 25 ms base, capped at ten times that,
// fully jittered.
const (
	retryBase = 25 * time.Millisecond
	retryMax  = 250 * time.Millisecond
	// mirrorTimeout bounds a mirrored request when its route has none.
	mirrorTimeout = 15 * time.Second
	// maxResponse bounds a response the router buffers for filters.
	maxResponse = 64 << 20
)

// pickCluster draws a weighted cluster as Envoy does: a random value
// modulo the total weight.
func pickCluster(cs []xdsconfig.WeightedCluster) string {
	if len(cs) == 1 {
		return cs[0].Name
	}
	var total uint32
	for _, c := range cs {
		total += c.Weight
	}
	v := rand.Uint32N(total)
	for _, c := range cs {
		if v < c.Weight {
			return c.Name
		}
		v -= c.Weight
	}
	return cs[len(cs)-1].Name
}

// failure is how an attempt failed before a response.
type failure int

const (
	failConnect failure = iota
	failReset
	failPerTryTimeout
)

func retriableFailure(on xdsconfig.RetryOn, f failure) bool {
	switch f {
	case failConnect:
		return on.ConnectFailure || on.FiveXX || on.GatewayError
	case failReset:
		return on.Reset || on.FiveXX
	default:
		return on.Reset || on.FiveXX || on.GatewayError
	}
}

// retriableResponse says whether a response with HTTP status code (and,
// for a trailers-only gRPC answer, grpcStatus >= 0) is retried.
func retriableResponse(on xdsconfig.RetryOn, code, grpcStatus int) bool {
	switch {
	case on.FiveXX && code >= 500:
		return true
	case on.GatewayError && code >= 502 && code <= 504:
		return true
	case on.Retriable4xx && code == 409:
		return true
	}
	return grpcStatus > 0 && on.GRPC[grpcStatus]
}

// forward sends req to the route's cluster with retries. It returns the
// whole response when buffered (filters will see it), or streams it to w
// and returns its status, or returns the local reply to send.
func (h *Handler) forward(ctx context.Context, route *xdsconfig.Route, req *Message, rest io.Reader, buffered bool, w http.ResponseWriter) (*Message, int, *LocalReply) {
	act := &route.Action
	c := h.cfg.Clusters.Get(pickCluster(act.Clusters))
	if c == nil {
		return nil, 0, &LocalReply{Status: http.StatusServiceUnavailable, GRPCStatus: -1}
	}
	for _, m := range act.Mirrors {
		if mc := h.cfg.Clusters.Get(m.Cluster); mc != nil && rest == nil && hit(m.PerMillion) {
			h.mirror(ctx, mc, req, act.Timeout)
		}
	}
	if act.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, act.Timeout)
		defer cancel()
	}
	retries := 0
	var on xdsconfig.RetryOn
	var perTry time.Duration
	if r := act.Retry; r != nil && rest == nil {
		retries, on, perTry = r.NumRetries, r.On, r.PerTryTimeout
	}
	reqID := requestID(req)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.Stats.RqRetry.Inc()
			if !sleep(ctx, backoff(attempt)) {
				break
			}
		}
		release, err := c.Acquire()
		if err != nil {
			return nil, 0, &LocalReply{Status: http.StatusServiceUnavailable, Body: bodyOverflow, GRPCStatus: -1}
		}
		host, err := c.Pick()
		if err != nil {
			release()
			return nil, 0, &LocalReply{Status: http.StatusServiceUnavailable, Body: bodyNoHealthy, GRPCStatus: -1}
		}
		t := try{c: c, host: host, req: req, rest: rest, reqID: reqID, perTry: perTry, timeout: act.Timeout,
			buffered: buffered, on: on, canRetry: attempt < retries}
		retry, msg, code, fail, err := h.attemptHeld(ctx, w, release, t)
		switch {
		case err == nil && retry:
			continue // a retriable response, drained
		case err == nil && msg == nil:
			return nil, code, nil // streamed
		case err == nil:
			if attempt > 0 {
				c.Stats.RqRetrySuccess.Inc()
			}
			return msg, 0, nil
		}
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				c.Stats.RqTimeout.Inc()
				return nil, 0, &LocalReply{Status: http.StatusGatewayTimeout, Body: bodyTimeout, GRPCStatus: -1}
			}
			return nil, 499, nil // the client went away
		}
		if retriableFailure(on, fail) && h.takeRetry(t) {
			continue
		}
		switch fail {
		case failConnect:
			return nil, 0, &LocalReply{Status: http.StatusServiceUnavailable, Body: bodyConnectFail, GRPCStatus: -1}
		case failPerTryTimeout:
			return nil, 0, &LocalReply{Status: http.StatusGatewayTimeout, Body: bodyTimeout, GRPCStatus: -1}
		default:
			return nil, 0, &LocalReply{Status: http.StatusServiceUnavailable, Body: bodyReset, GRPCStatus: -1}
		}
	}
	c.Stats.RqTimeout.Inc()
	return nil, 0, &LocalReply{Status: http.StatusGatewayTimeout, Body: bodyTimeout, GRPCStatus: -1}
}

// retryBudget takes a retry from the cluster's max_retries; the slot is
// held for the back-off and released after it, which is how long Envoy
// counts a retry as outstanding for a short request.
func (h *Handler) retryBudget(c *upstream.Cluster) bool {
	release, ok := c.AcquireRetry()
	if !ok {
		return false
	}
	time.AfterFunc(retryMax, release)
	return true
}

func backoff(attempt int) time.Duration {
	bound := min(retryBase<<(attempt-1), retryMax)
	return time.Duration(rand.Int64N(int64(bound)))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// try is one upstream attempt's inputs.
type try struct {
	c               *upstream.Cluster
	host            *upstream.Host
	req             *Message
	rest            io.Reader // the body past the buffer limit, or nil
	reqID           string
	perTry, timeout time.Duration
	buffered        bool // return the whole response instead of streaming it
	on              xdsconfig.RetryOn
	canRetry        bool // the route's retries are not used up
}

// takeRetry says whether a retriable answer or failure of t is retried.
func (h *Handler) takeRetry(t try) bool { return t.canRetry && h.retryBudget(t.c) }

// attemptHeld makes one upstream try and then frees its request slot, also
// when the try ends the handler (a stream broken mid-answer aborts it with
// http.ErrAbortHandler).
func (h *Handler) attemptHeld(ctx context.Context, w http.ResponseWriter, release func(), t try) (bool, *Message, int, failure, error) {
	defer release()
	return h.attempt(ctx, w, t)
}

// attempt makes one upstream try. Results, exclusively:
//   - err != nil: no response (fail says why), reported to outlier
//     detection;
//   - retry: a response the retry policy retries (takeRetry agreed),
//     drained and counted;
//   - msg != nil: the whole response (buffered);
//   - all nil: the response was streamed to w with status code.
func (h *Handler) attempt(ctx context.Context, w http.ResponseWriter, t try) (retry bool, msg *Message, code int, fail failure, err error) {
	c, host := t.c, t.host
	tryCtx, cancel := ctx, context.CancelFunc(func() {})
	perTry := t.perTry
	if perTry > 0 {
		tryCtx, cancel = context.WithTimeout(ctx, perTry)
	}
	defer cancel()
	rt := c.Transport()
	if lt, ok := rt.(*h2.Transport); ok && t.buffered && t.rest == nil && len(t.req.Trailers) == 0 {
		if lr := h.listRequest(c.Scheme(), t); lr != nil {
			return h.attemptList(ctx, tryCtx, lt, lr, t)
		}
	}
	// The h2 transport has encoded the headers when RoundTrip returns, so
	// their map goes back to the pool for the next request; net/http's
	// may still be writing them.
	var hb *headerBuf
	if _, ok := rt.(*h2.Transport); ok {
		hb = h.headers.Get().(*headerBuf)
	}
	up, err := upstreamRequest(tryCtx, c.Scheme(), host.Addr, t, hb)
	if err != nil {
		return false, nil, 0, failReset, err
	}
	start := time.Now()
	c.Stats.RqTotal.Inc()
	resp, err := rt.RoundTrip(up)
	if hb != nil {
		hb.reset()
		h.headers.Put(hb)
	}
	if err != nil {
		return false, nil, 0, roundTripFailure(ctx, tryCtx, c, host, err), err
	}
	gs := -1
	if resp.StatusCode == http.StatusOK {
		gs = grpcStatus(resp.Header["Grpc-Status"])
	}
	if h.retried(t, start, resp.StatusCode, gs, resp.Body) {
		return true, nil, 0, 0, nil
	}
	if t.buffered {
		m, err := readResponse(resp, c, host, start)
		return bufferedResult(ctx, tryCtx, start, m, err)
	}
	return false, nil, streamResponse(ctx, w, resp, c, host, start), 0, nil
}

// retried says whether an answer with status (and gs, the gRPC status of
// a trailers-only answer, or -1) is retried; such an answer is counted,
// reported to outlier detection and drained.
func (h *Handler) retried(t try, start time.Time, status, gs int, body io.ReadCloser) bool {
	effective := status
	if gs >= 0 {
		effective = grpcToHTTP(gs)
	}
	if !retriableResponse(t.on, effective, gs) || !h.takeRetry(t) {
		return false
	}
	t.c.Stats.Response(status, time.Since(start))
	t.c.Report(t.host, effective)
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxResponse))
	_ = body.Close()
	return true
}

// bufferedResult is a buffered attempt's result from the answer read
// whole (m) or the read's error.
func bufferedResult(ctx, tryCtx context.Context, start time.Time, m *Message, err error) (bool, *Message, int, failure, error) {
	if err != nil {
		if ctx.Err() == nil && tryCtx.Err() != nil {
			return false, nil, 0, failPerTryTimeout, err
		}
		return false, nil, 0, failReset, err
	}
	m.Headers = append(m.Headers, [2]string{"x-envoy-upstream-service-time", strconv.FormatInt(time.Since(start).Milliseconds(), 10)})
	return false, m, 0, 0, nil
}

// roundTripFailure classifies an attempt that got no response, counts it
// and reports it to outlier detection (unless the client went away).
func roundTripFailure(ctx, tryCtx context.Context, c *upstream.Cluster, host *upstream.Host, err error) failure {
	fail := failReset
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		fail = failConnect
		c.Stats.CxConnectFail.Inc()
	case ctx.Err() == nil && tryCtx.Err() != nil:
		fail = failPerTryTimeout
		c.Stats.RqPerTryTimeout.Inc()
	}
	if ctx.Err() == nil {
		c.Report(host, http.StatusServiceUnavailable)
	}
	return fail
}

// grpcStatus is the gRPC status of a grpc-status field's values (the
// first), or -1 without one.
func grpcStatus(vs []string) int {
	if len(vs) == 0 || vs[0] == "" {
		return -1
	}
	gs, _ := strconv.Atoi(vs[0])
	return gs
}

// readResponse reads a whole response and reports it to the cluster's
// stats and outlier detection (a gRPC status in trailers counts as its
// HTTP equivalent, as Envoy's router reports it).
func readResponse(resp *http.Response, c *upstream.Cluster, host *upstream.Host, start time.Time) (*Message, error) {
	defer resp.Body.Close()
	body, err := readAtMost(resp.Body, maxResponse)
	if err != nil {
		c.Report(host, http.StatusServiceUnavailable)
		return nil, err
	}
	m := &Message{Headers: responseHeaders(resp), Body: body}
	if len(resp.Trailer) > 0 {
		m.Trailers = make([][2]string, 0, len(resp.Trailer))
	}
	for k, vs := range resp.Trailer {
		for _, v := range vs {
			m.Trailers = append(m.Trailers, [2]string{lowerKey(k), v})
		}
	}
	c.Stats.Response(resp.StatusCode, time.Since(start))
	c.Report(host, effectiveCode(resp))
	return m, nil
}

func effectiveCode(resp *http.Response) int {
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode
	}
	// Indexed by the canonical name: Get would canonicalize "grpc-status"
	// into a new string on every call.
	gs := grpcStatus(resp.Trailer["Grpc-Status"])
	if gs < 0 {
		gs = grpcStatus(resp.Header["Grpc-Status"])
	}
	if gs < 0 {
		return resp.StatusCode
	}
	return grpcToHTTP(gs)
}

func responseHeaders(resp *http.Response) [][2]string {
	// Room for :status and the x-envoy-upstream-service-time the
	// router adds.
	out := make([][2]string, 0, len(resp.Header)+2)
	out = append(out, [2]string{":status", strconv.Itoa(resp.StatusCode)})
	for k, vs := range resp.Header {
		lk := lowerKey(k)
		if hopByHop[lk] {
			continue
		}
		for _, v := range vs {
			out = append(out, [2]string{lk, v})
		}
	}
	return out
}

// streamResponse copies a response to the client as it arrives; ctx is
// the downstream request's (with the route timeout).
func streamResponse(ctx context.Context, w http.ResponseWriter, resp *http.Response, c *upstream.Cluster, host *upstream.Host, start time.Time) int {
	defer resp.Body.Close()
	h := w.Header()
	for k, vs := range resp.Header {
		if hopByHop[lowerKey(k)] {
			continue
		}
		h[k] = vs
	}
	h.Set("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(start).Milliseconds(), 10))
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	var readErr, writeErr error
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				writeErr = werr
				break
			}
			_ = rc.Flush()
		}
		if err != nil {
			if err != io.EOF {
				readErr = err
			}
			break
		}
	}
	if writeErr != nil || readErr != nil && errors.Is(ctx.Err(), context.Canceled) {
		// The client went away, reset its stream or stopped reading: Envoy
		// resets the upstream stream locally, which outlier detection does
		// not count against the host. (A route or per-try timeout ends the
		// context with DeadlineExceeded and is counted below.)
		panic(http.ErrAbortHandler)
	}
	if readErr != nil {
		c.Report(host, http.StatusServiceUnavailable)
		// A broken upstream stream resets the downstream one, as Envoy
		// resets it once the response has started.
		panic(http.ErrAbortHandler)
	}
	for k, vs := range resp.Trailer {
		for _, v := range vs {
			h.Add(http.TrailerPrefix+k, v)
		}
	}
	c.Stats.Response(resp.StatusCode, time.Since(start))
	c.Report(host, effectiveCode(resp))
	return resp.StatusCode
}

// headerBuf is an upstream request's header map and the array its values
// are windows of, pooled for the h2 transport.
type headerBuf struct {
	h    http.Header
	vals []string
}

func (b *headerBuf) reset() {
	clear(b.h)
	clear(b.vals)
	b.vals = b.vals[:0]
}

// upstreamRequest builds t's request to addr; its headers go in hb's map
// when hb is not nil.
func upstreamRequest(ctx context.Context, scheme, addr string, t try, hb *headerBuf) (*http.Request, error) {
	req, rest, reqID, timeout := t.req, t.rest, t.reqID, t.timeout
	method, _ := req.Get(":method")
	path, _ := req.Get(":path")
	authority, _ := req.Get(":authority")
	var body io.Reader = newHeldBody(req.Body)
	if rest != nil {
		body = io.MultiReader(bytes.NewReader(req.Body), rest)
	}
	up, err := http.NewRequestWithContext(ctx, method, scheme+"://"+addr+path, body)
	if err != nil {
		return nil, err
	}
	up.Host = authority
	if rest == nil {
		up.ContentLength = int64(len(req.Body))
		if len(req.Body) == 0 {
			up.Body = http.NoBody
		} else if hb == nil {
			// What NewRequest sets for a bytes.Reader: net/http's
			// transport rewinds a body on a reused connection's failure
			// (the h2 transport never does).
			up.GetBody = func() (io.ReadCloser, error) { return newHeldBody(req.Body), nil }
		}
	} else {
		up.ContentLength = -1
	}
	// The header map is keyed by the lower-case names the Message holds
	// (both of Go's transports write them as they are; HTTP/2 requires
	// lower case anyway), which skips canonicalizing every name.
	// The values share one backing array, a one-element window each
	// (capacity-capped, so a repeated name's append copies out of it).
	if hb == nil {
		hb = &headerBuf{h: make(http.Header, len(req.Headers)+3), vals: make([]string, 0, len(req.Headers)+3)}
	}
	up.Header = hb.h
	add := func(k, v string) {
		if old, ok := up.Header[k]; ok {
			up.Header[k] = append(old, v)
			return
		}
		hb.vals = append(hb.vals, v)
		n := len(hb.vals)
		up.Header[k] = hb.vals[n-1 : n : n]
	}
	for _, kv := range req.Headers {
		switch {
		case strings.HasPrefix(kv[0], ":"), kv[0] == "content-length",
			kv[0] == "x-request-id", kv[0] == "x-forwarded-proto", kv[0] == "x-envoy-expected-rq-timeout-ms":
			continue
		}
		add(kv[0], kv[1])
	}
	if len(req.Trailers) > 0 {
		up.Trailer = http.Header{}
		for _, kv := range req.Trailers {
			up.Trailer.Add(kv[0], kv[1])
		}
	}
	add("x-request-id", reqID)
	add("x-forwarded-proto", "http")
	if timeout > 0 {
		add("x-envoy-expected-rq-timeout-ms", strconv.FormatInt(timeout.Milliseconds(), 10))
	}
	return up, nil
}

// heldBody is a buffered request body; the h2 transport sends its bytes
// (Held) as they are instead of reading them into a copy.
type heldBody struct {
	bytes.Reader
	b []byte
}

func newHeldBody(b []byte) *heldBody {
	h := &heldBody{b: b}
	h.Reset(b)
	return h
}

// Held returns the unread bytes.
func (h *heldBody) Held() []byte { return h.b[len(h.b)-h.Len():] }

func (h *heldBody) Close() error { return nil }

// requestID keeps the client's x-request-id or makes a UUID v4, as Envoy
// does. The bits come from math/rand/v2's per-thread ChaCha8 (seeded by
// the OS) rather than crypto/rand, which costs a getrandom system call per
// request: the id names a request for logs and traces, it guards nothing.
func requestID(req *Message) string {
	if v, ok := req.Get("x-request-id"); ok && v != "" {
		return v
	}
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b[:])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// mirror sends a copy of req to c and drops the answer; the authority gets
// Envoy's "-shadow" suffix. It is bounded by the route's timeout.
func (h *Handler) mirror(ctx context.Context, c *upstream.Cluster, req *Message, timeout time.Duration) {
	if timeout <= 0 {
		timeout = mirrorTimeout
	}
	cp := &Message{Headers: append([][2]string(nil), req.Headers...), Body: req.Body}
	for i, kv := range cp.Headers {
		if kv[0] == ":authority" {
			host, port, err := net.SplitHostPort(kv[1])
			if err != nil {
				cp.Headers[i][1] = kv[1] + "-shadow"
			} else {
				cp.Headers[i][1] = net.JoinHostPort(host+"-shadow", port)
			}
		}
	}
	release, err := c.Acquire()
	if err != nil {
		return
	}
	host, err := c.Pick()
	if err != nil {
		release()
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	go func() {
		defer cancel()
		defer release()
		up, err := upstreamRequest(ctx, c.Scheme(), host.Addr, try{req: cp, reqID: requestID(cp), timeout: timeout}, nil)
		if err != nil {
			return
		}
		start := time.Now()
		c.Stats.RqTotal.Inc()
		resp, err := c.Transport().RoundTrip(up)
		if err != nil {
			c.Report(host, http.StatusServiceUnavailable)
			return
		}
		_, _ = readResponse(resp, c, host, start)
	}()
}
