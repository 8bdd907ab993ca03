// Package router serves one listener's HTTP connection manager: it turns a
// downstream request (HTTP/1.1 or h2c) into a filter-chain pass, a route
// selection and upstream attempts with Envoy's timeout, retry, mirroring
// and local-reply behaviour, and counts Envoy's HTTP stats.
package router

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/maestro-ml/maestro/internal/gateway/stats"
	"github.com/maestro-ml/maestro/internal/gateway/upstream"
	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

// DefaultBufferLimit is Envoy's per_connection_buffer_limit_bytes default,
// the most a buffering filter may hold of one stream's body.
const DefaultBufferLimit = 1 << 20

// FilterFactory makes one instance of an HTTP filter per stream.
type FilterFactory interface {
	NewStream(ctx context.Context) (FilterStream, error)
}

// FilterStream is one stream's instance of a filter. The router buffers
// the request (and, with filters, the response) so a filter sees each whole.
type FilterStream interface {
	// OnRequest runs the request callbacks on req, which it may change;
	// route is the route selected for the headers as they are now. A
	// non-nil reply ends the request there.
	OnRequest(ctx context.Context, req *Message, route string) (*LocalReply, error)
	// OnResponse runs the response callbacks on resp, which it may change.
	OnResponse(ctx context.Context, resp *Message) (*LocalReply, error)
	// Done ends the stream (log, done, delete callbacks). Nothing may use
	// the stream after it: its filter may reuse it for another.
	Done()
}

// Snapshot is a listener's configuration at one moment.
type Snapshot struct {
	Listener *xdsconfig.Listener
	Routes   *xdsconfig.RouteConfig // nil until RDS arrives
	// Filters are the ECDS filters by name; a missing one answers 500 as
	// Envoy's missing-config filter does.
	Filters map[string]FilterFactory
	// Tracer, if set, traces each request (the HCM's tracing).
	Tracer trace.Tracer
}

// Config configures a Handler.
type Config struct {
	Snapshot    func() *Snapshot
	Clusters    *upstream.Manager
	Stats       *stats.Store
	Logger      *slog.Logger
	BufferLimit int // DefaultBufferLimit when 0
}

// Handler serves one listener.
type Handler struct {
	cfg     Config
	st      *httpStats
	headers sync.Pool // *headerBuf
	lists   sync.Pool // *listBuf
	// lastMillis is the last route timeout's header value (millis).
	lastMillis atomic.Pointer[millisText]
}

type httpStats struct {
	rqTotal, noRoute, tooLarge, aborts, delays *stats.Counter
	class                                      [6]*stats.Counter
	rqTime                                     *stats.Histogram
}

// New returns a handler for the listener whose HCM stat prefix is prefix.
func New(prefix string, cfg Config) *Handler {
	if cfg.BufferLimit == 0 {
		cfg.BufferLimit = DefaultBufferLimit
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := cfg.Stats
	l := stats.L("envoy_http_conn_manager_prefix", prefix)
	st := &httpStats{
		rqTotal:  s.Counter("envoy_http_downstream_rq_total", l...),
		noRoute:  s.Counter("envoy_http_no_route", l...),
		tooLarge: s.Counter("envoy_http_downstream_rq_too_large", l...),
		aborts:   s.Counter("envoy_http_fault_aborts_injected", l...),
		delays:   s.Counter("envoy_http_fault_delays_injected", l...),
		rqTime:   s.Histogram("envoy_http_downstream_rq_time", l...),
	}
	for c := 1; c <= 5; c++ {
		st.class[c] = s.Counter("envoy_http_downstream_rq_xx", stats.L("envoy_response_code_class", strconv.Itoa(c), "envoy_http_conn_manager_prefix", prefix)...)
	}
	h := &Handler{cfg: cfg, st: st}
	h.headers.New = func() any { return &headerBuf{h: make(http.Header, 16), vals: make([]string, 0, 16)} }
	return h
}

// hop-by-hop headers never forwarded.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "transfer-encoding": true,
	"upgrade": true, "http2-settings": true, "host": true,
}

func isGRPC(m *Message) bool {
	ct, _ := m.Get("content-type")
	return strings.HasPrefix(ct, "application/grpc")
}

// ServeHTTP runs one downstream stream.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.ServeHeaderList(w, r, nil)
}

// ServeHeaderList runs one downstream stream whose header fields the h2
// server gives as a list (h2.HeaderListHandler); with fields nil they are
// r.Header.
func (h *Handler) ServeHeaderList(w http.ResponseWriter, r *http.Request, fields [][2]string) {
	start := time.Now()
	h.st.rqTotal.Inc()
	code := h.serve(w, r, fields)
	if c := code / 100; c >= 1 && c <= 5 {
		h.st.class[c].Inc()
	}
	h.st.rqTime.Record(float64(time.Since(start).Microseconds()) / 1000)
}

func requestMessage(r *http.Request, fields [][2]string) *Message {
	m := &Message{Headers: make([][2]string, 0, len(r.Header)+len(fields)+4)}
	m.Headers = append(m.Headers, [2]string{":method", r.Method}, [2]string{":path", r.URL.RequestURI()},
		[2]string{":authority", r.Host}, [2]string{":scheme", "http"})
	for _, kv := range fields {
		if !hopByHop[kv[0]] {
			m.Headers = append(m.Headers, kv)
		}
	}
	for k, vs := range r.Header {
		lk := lowerKey(k)
		if hopByHop[lk] && lk != "te" {
			continue
		}
		for _, v := range vs {
			m.Headers = append(m.Headers, [2]string{lk, v})
		}
	}
	return m
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, fields [][2]string) (code int) {
	ctx := r.Context()
	snap := h.cfg.Snapshot()
	req := requestMessage(r, fields)
	if snap.Tracer != nil {
		var end func(int)
		ctx, end = startSpan(ctx, snap.Tracer, req)
		defer func() { end(code) }()
	}
	grpcReq := isGRPC(req)
	local := func(lr *LocalReply) int { return writeLocal(w, grpcReq, lr) }
	// The stream's filter chain is built once, from the route the request
	// headers select before any filter runs, as Envoy builds it:
	// ActiveStream::decodeHeaders resolves the route (refreshCachedRoute)
	// and then creates the chain, FilterManager::createFilterChain runs
	// once per stream and asks that route which filters it disables
	// (FilterChainUtility::createFilterChainForFactories skips a filter
	// whose route's, else virtual host's, typed_per_filter_config holds
	// FilterConfig{disabled: true}). With no route, no filter is
	// disabled. A filter that later changes headers re-selects the route
	// the router uses, but the chain stays as built.
	chain := snap.Listener.Filters
	first := Select(snap.Routes, req)
	var kept [4]xdsconfig.HTTPFilter // the usual chain, without an allocation
	if first != nil && len(first.Disabled) > 0 {
		chain = enabled(kept[:0], chain, first.Disabled)
	}

	// Buffer the body up to the limit. Past it, a chain with a buffering
	// filter answers 413 as Envoy does; without one the rest streams
	// through, and the request can no longer be retried.
	body, err := readAtMost(r.Body, int64(h.cfg.BufferLimit)+1)
	if err != nil {
		return 499 // the client went away
	}
	var rest io.Reader
	if len(body) > h.cfg.BufferLimit {
		if buffering(chain) {
			h.st.tooLarge.Inc()
			return local(&LocalReply{Status: http.StatusRequestEntityTooLarge, Body: bodyTooLarge, GRPCStatus: -1})
		}
		rest = r.Body
	}
	req.Body = body
	if rest == nil {
		for k, vs := range r.Trailer {
			for _, v := range vs {
				req.Trailers = append(req.Trailers, [2]string{lowerKey(k), v})
			}
		}
	}

	// Decoder filters in order; each sees the route for the headers as
	// they are then (a header change clears Envoy's route cache).
	var held [2]FilterStream // room for the usual chain without an allocation
	streams := held[:0]
	defer func() {
		for _, fs := range slices.Backward(streams) {
			fs.Done()
		}
	}()
	for i, f := range chain {
		route := first // no filter has run yet: the headers are unchanged
		if i > 0 {
			route = Select(snap.Routes, req)
		}
		switch f.Kind {
		case xdsconfig.FilterFault:
			if lr := h.fault(ctx, f, route); lr != nil {
				return local(lr)
			}
			if ctx.Err() != nil {
				return 499
			}
		case xdsconfig.FilterWasm:
			fac := snap.Filters[f.Name]
			if fac == nil {
				return local(&LocalReply{Status: http.StatusInternalServerError, GRPCStatus: -1})
			}
			fs, err := fac.NewStream(ctx)
			if err != nil {
				h.cfg.Logger.Error("filter stream", "filter", f.Name, "err", err)
				return local(&LocalReply{Status: http.StatusServiceUnavailable, GRPCStatus: -1})
			}
			streams = append(streams, fs)
			name := ""
			if route != nil {
				name = route.Name
			}
			lr, err := fs.OnRequest(ctx, req, name)
			if err != nil {
				h.cfg.Logger.Error("filter request", "filter", f.Name, "err", err)
				return local(&LocalReply{Status: http.StatusServiceUnavailable, GRPCStatus: -1})
			}
			if lr != nil {
				return h.respondLocal(ctx, w, grpcReq, lr, streams[:len(streams)-1])
			}
		}
	}
	route := Select(snap.Routes, req)
	if route == nil {
		h.st.noRoute.Inc()
		return h.respondLocal(ctx, w, grpcReq, &LocalReply{Status: http.StatusNotFound, GRPCStatus: -1}, streams)
	}
	resp, streamed, lr := h.forward(ctx, route, req, rest, len(streams) > 0, w)
	if lr != nil {
		return h.respondLocal(ctx, w, grpcReq, lr, streams)
	}
	if resp == nil {
		return streamed
	}
	// Encoder filters run in reverse order.
	for i := len(streams) - 1; i >= 0; i-- {
		lr, err := streams[i].OnResponse(ctx, resp)
		if err != nil {
			h.cfg.Logger.Error("filter response", "err", err)
			return local(&LocalReply{Status: http.StatusServiceUnavailable, GRPCStatus: -1})
		}
		if lr != nil {
			return local(lr)
		}
	}
	return writeMessage(w, resp)
}

// readAtMost is io.ReadAll(io.LimitReader(r, n)) without the
// LimitedReader's allocation.
func readAtMost(r io.Reader, n int64) ([]byte, error) {
	b := make([]byte, 0, min(512, n))
	for int64(len(b)) < n {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		m, err := r.Read(b[len(b):min(int64(cap(b)), n)])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// respondLocal sends a local reply through the encoder filters before it,
// as Envoy passes local replies through them.
func (h *Handler) respondLocal(ctx context.Context, w http.ResponseWriter, grpcReq bool, lr *LocalReply, streams []FilterStream) int {
	if len(streams) == 0 {
		return writeLocal(w, grpcReq, lr)
	}
	rec := &recorder{header: http.Header{}}
	code := writeLocal(rec, grpcReq, lr)
	resp := rec.message(code)
	for i := len(streams) - 1; i >= 0; i-- {
		if r2, err := streams[i].OnResponse(ctx, resp); err != nil || r2 != nil {
			break
		}
	}
	return writeMessage(w, resp)
}

// writeMessage writes a buffered response: status, headers, body and
// trailers (a gRPC status with no body stays trailers-only).
func writeMessage(w http.ResponseWriter, m *Message) int {
	if bw, ok := w.(bufferedWriter); ok && flatOK(m) {
		return writeBuffered(bw, m)
	}
	h := w.Header()
	code := downstreamHeaders(m, func(kv [2]string) {
		k := canonicalKey(kv[0])
		h[k] = append(h[k], kv[1])
	})
	for _, kv := range m.Trailers {
		k := trailerKey(kv[0])
		h[k] = append(h[k], kv[1])
	}
	if len(m.Trailers) == 0 {
		h.Set("content-length", strconv.Itoa(len(m.Body)))
	}
	w.WriteHeader(code)
	_, _ = w.Write(m.Body)
	return code
}

// bufferedWriter is implemented by the h2 server's response writer: it
// takes a whole response as header lists, which spares building (and there
// walking) a header map per response.
type bufferedWriter interface {
	WriteBuffered(code int, headers [][2]string, body []byte, trailers [][2]string)
}

// flatOK says whether m's lists can go to a bufferedWriter as they are:
// every name lower-case (the map path lower-cases them on the way out) and
// no "trailer" header (which the map path turns into a declaration).
func flatOK(m *Message) bool {
	for _, kv := range m.Headers {
		if !isLower(kv[0]) || kv[0] == "trailer" {
			return false
		}
	}
	for _, kv := range m.Trailers {
		if !isLower(kv[0]) {
			return false
		}
	}
	return true
}

func isLower(s string) bool {
	for i := range len(s) {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return false
		}
	}
	return true
}

// downstreamHeaders passes each of m's headers that is sent downstream to
// add and returns the status code.
func downstreamHeaders(m *Message, add func(kv [2]string)) int {
	code := http.StatusOK
	for _, kv := range m.Headers {
		if kv[0] == ":status" {
			code, _ = strconv.Atoi(kv[1])
			continue
		}
		if strings.HasPrefix(kv[0], ":") || hopByHop[kv[0]] || kv[0] == "content-length" {
			continue
		}
		add(kv)
	}
	return code
}

// writeBuffered is writeMessage for a bufferedWriter.
func writeBuffered(w bufferedWriter, m *Message) int {
	hs := make([][2]string, 0, len(m.Headers)+1)
	code := downstreamHeaders(m, func(kv [2]string) { hs = append(hs, kv) })
	if len(m.Trailers) == 0 {
		hs = append(hs, [2]string{"content-length", strconv.Itoa(len(m.Body))})
	}
	w.WriteBuffered(code, hs, m.Body, m.Trailers)
	return code
}

// recorder captures a local reply as a Message.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

func (r *recorder) message(code int) *Message {
	m := &Message{Headers: [][2]string{{":status", strconv.Itoa(code)}}, Body: r.body.Bytes()}
	for k, vs := range r.header {
		for _, v := range vs {
			m.Headers = append(m.Headers, [2]string{lowerKey(k), v})
		}
	}
	return m
}

// enabled appends to out the filters of fs that disabled does not name.
func enabled(out, fs []xdsconfig.HTTPFilter, disabled map[string]bool) []xdsconfig.HTTPFilter {
	for _, f := range fs {
		if !disabled[f.Name] {
			out = append(out, f)
		}
	}
	return out
}

// buffering says whether a filter of the chain may buffer the body: the
// wasm filters may (a pause buffers it in Envoy); the fault filter never.
func buffering(fs []xdsconfig.HTTPFilter) bool {
	for _, f := range fs {
		if f.Kind == xdsconfig.FilterWasm {
			return true
		}
	}
	return false
}

// fault applies the fault filter: the route's override for this filter
// name, else the listener's config.
func (h *Handler) fault(ctx context.Context, f xdsconfig.HTTPFilter, route *xdsconfig.Route) *LocalReply {
	cfg := f.Fault
	if route != nil && route.Faults[f.Name] != nil {
		cfg = route.Faults[f.Name]
	}
	if cfg == nil {
		return nil
	}
	if cfg.HasDelay && hit(cfg.DelayPerMil) {
		h.st.delays.Inc()
		t := time.NewTimer(cfg.Delay)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if cfg.HasAbort && hit(cfg.AbortPerMil) {
		h.st.aborts.Inc()
		if cfg.AbortHTTP != 0 {
			return &LocalReply{Status: cfg.AbortHTTP, Body: bodyFaultAbort, GRPCStatus: -1}
		}
		return &LocalReply{Status: grpcToHTTP(cfg.AbortGRPC), Body: bodyFaultAbort, GRPCStatus: cfg.AbortGRPC}
	}
	return nil
}

func hit(perMillion uint32) bool {
	return perMillion > 0 && rand.Uint32N(1_000_000) < perMillion
}
