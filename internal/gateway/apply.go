package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/maestro-ml/maestro/internal/gateway/h2"
	"github.com/maestro-ml/maestro/internal/gateway/router"
	"github.com/maestro-ml/maestro/internal/gateway/xdsclient"
	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

// listener is one bound listener with its current snapshot.
type listener struct {
	bind  string
	codec xdsconfig.Codec
	ln    net.Listener
	srv   *h2.Mux
	snap  atomic.Pointer[router.Snapshot]
}

func (l *listener) stop(ctx context.Context) {
	if err := l.srv.Shutdown(ctx); err != nil {
		_ = l.srv.Close()
	}
}

// apply makes state the running configuration, or fails with nothing
// changed: filters are loaded and listeners bound first, and only when all
// succeeded are clusters, filters and listeners switched.
func (g *Gateway) apply(ctx context.Context, state xdsclient.State) error {
	g.mu.Lock()
	defer g.mu.Unlock()

	// Clusters first: adding them is harmless if the rest fails, and a
	// filter's remote code loaded below is fetched through one.
	clusters := make(map[string]*xdsconfig.Cluster)
	for name, r := range state[resource.ClusterType] {
		clusters[name] = r.Value.(*xdsconfig.Cluster)
	}
	eps := make(map[string]*xdsconfig.Endpoints)
	for name, r := range state[resource.EndpointType] {
		eps[name] = r.Value.(*xdsconfig.Endpoints)
	}
	secrets := make(map[string]*xdsconfig.Secret)
	for name, r := range state[resource.SecretType] {
		secrets[name] = r.Value.(*xdsconfig.Secret)
	}
	g.clusters.Update(clusters, eps, secrets)

	// Filters: keep those whose config is unchanged, load the others.
	filters := make(map[string]loadedFilter)
	var fresh []Filter
	undo := func() {
		for _, f := range fresh {
			_ = f.Close()
		}
	}
	for name, r := range state[resource.ExtensionConfigType] {
		cfg := r.Value.(*xdsconfig.WasmFilter)
		if old, ok := g.filters[name]; ok && sameWasm(old.cfg, cfg) {
			filters[name] = old
			continue
		}
		f, err := g.cfg.LoadFilter(ctx, cfg, g.clusters)
		if err != nil {
			undo()
			return fmt.Errorf("filter config %q: %w", name, err)
		}
		fresh = append(fresh, f)
		filters[name] = loadedFilter{cfg: cfg, filter: f}
	}

	// Listeners: reuse those on the same address, bind the others.
	listeners := make(map[string]*listener)
	var bound []*listener
	for name, r := range state[resource.ListenerType] {
		lc := r.Value.(*xdsconfig.Listener)
		bind, err := g.bindAddr(lc)
		if err != nil {
			undo()
			closeAll(bound)
			return err
		}
		if old, ok := g.listeners[name]; ok && old.bind == bind {
			if old.codec == lc.Codec {
				listeners[name] = old
				continue
			}
			// Another codec on the same port: the old server must let
			// go of the port before the new one binds it.
			_ = old.srv.Close()
		}
		l, err := g.listen(lc, bind)
		if err != nil {
			undo()
			closeAll(bound)
			return fmt.Errorf("listener %q: %w", name, err)
		}
		bound = append(bound, l)
		listeners[name] = l
	}

	// Commit.
	for name, r := range state[resource.ListenerType] {
		lc := r.Value.(*xdsconfig.Listener)
		snap := &router.Snapshot{Listener: lc, Filters: map[string]router.FilterFactory{}}
		if rc, ok := state[resource.RouteType][lc.RouteConfig]; ok {
			snap.Routes = rc.Value.(*xdsconfig.RouteConfig)
		}
		for _, f := range lc.Filters {
			if lf, ok := filters[f.Name]; ok {
				snap.Filters[f.Name] = lf.filter
			}
		}
		if lc.Tracing != nil {
			tr, err := g.tracers.tracer(ctx, *lc.Tracing)
			if err != nil {
				g.log.Error("tracing off for listener", "listener", name, "err", err)
			} else {
				snap.Tracer = tr
			}
		}
		listeners[name].snap.Store(snap)
	}
	for _, l := range bound {
		go func() { _ = l.srv.Serve(l.ln) }()
	}
	for name, l := range g.listeners {
		if listeners[name] != l {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
				defer cancel()
				l.stop(ctx)
			}()
		}
	}
	for name, lf := range g.filters {
		if filters[name].filter != lf.filter {
			// In-flight streams may still use the old filter.
			time.AfterFunc(drainTimeout, func() { _ = lf.filter.Close() })
		}
	}
	g.listeners, g.filters, g.state = listeners, filters, state
	return nil
}

func closeAll(ls []*listener) {
	for _, l := range ls {
		_ = l.ln.Close()
	}
}

func sameWasm(a, b *xdsconfig.WasmFilter) bool {
	if a.Name != b.Name || a.PluginName != b.PluginName || a.RootID != b.RootID || a.VMID != b.VMID ||
		a.Runtime != b.Runtime || a.FailOpen != b.FailOpen || a.AllowOnHeadersStopIteration != b.AllowOnHeadersStopIteration ||
		a.LocalFile != b.LocalFile || !bytes.Equal(a.Configuration, b.Configuration) {
		return false
	}
	if a.Remote == nil || b.Remote == nil {
		return a.Remote == b.Remote
	}
	return *a.Remote == *b.Remote
}

func (g *Gateway) bindAddr(lc *xdsconfig.Listener) (string, error) {
	host, port, err := net.SplitHostPort(lc.Address)
	if err != nil {
		return "", fmt.Errorf("listener %q: address: %w", lc.Name, err)
	}
	if g.cfg.BindHost != "" {
		host = g.cfg.BindHost
	}
	if p, ok := g.cfg.BindPort[lc.Name]; ok {
		port = strconv.Itoa(p)
	}
	return net.JoinHostPort(host, port), nil
}

// bufferLimit is the per-stream body buffer limit, also each h2c
// stream's receive window: a peer cannot make the gateway hold more of a
// body than a filter may buffer.
func (g *Gateway) bufferLimit() int {
	if g.cfg.BufferLimit > 0 {
		return g.cfg.BufferLimit
	}
	return router.DefaultBufferLimit
}

func (g *Gateway) listen(lc *xdsconfig.Listener, bind string) (*listener, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	l := &listener{bind: bind, codec: lc.Codec, ln: ln}
	h := router.New(lc.StatPrefix, router.Config{
		Snapshot: l.snap.Load, Clusters: g.clusters, Stats: g.stats, Logger: g.log, BufferLimit: g.cfg.BufferLimit,
	})
	// HTTP/1.1 stays with net/http; h2c is served by package h2, which
	// batches each response's frames into one write.
	l.srv = &h2.Mux{}
	if lc.Codec != xdsconfig.CodecHTTP2 {
		l.srv.HTTP1 = http1Server(h, g.cfg.WriteTimeout, g.cfg.StreamIdleTimeout)
	}
	if lc.Codec != xdsconfig.CodecHTTP1 {
		l.srv.H2 = h2.NewServer(h2.ServerConfig{Handler: h, StreamWindow: int32(g.bufferLimit()),
			WriteTimeout: g.cfg.WriteTimeout, BodyIdleTimeout: g.cfg.StreamIdleTimeout, Logger: g.log})
	}
	return l, nil
}

// Limits of the HTTP/1.1 side, as Envoy's connection manager sets them by
// default (the h2c side's are in package h2).
const (
	// maxHeaderBlock is max_request_headers_kb's default (60 KiB): a
	// longer request line and header block answers 431.
	maxHeaderBlock = 60 << 10
	// idleTimeout closes a connection with no request in flight, as
	// common_http_protocol_options.idle_timeout's default (1 h) does.
	idleTimeout = time.Hour
	// readHeaderTimeout bounds the wait for a request's header block
	// once its first bytes arrived. Envoy leaves request_headers_timeout
	// off and relies on stream_idle_timeout (5 min) to free a peer that
	// stops sending; Go's server has no idle timer for a request being
	// read, so a whole-header deadline stands in for it, far above what a
	// healthy client needs.
	readHeaderTimeout = 10 * time.Second
	// DefaultStreamIdleTimeout is stream_idle_timeout's default: an
	// HTTP/1.1 request body that stops arriving for this long answers
	// 408.
	DefaultStreamIdleTimeout = 5 * time.Minute
	// writeChunk is the most handed to the connection in one write: the
	// write timeout bounds the time the client takes to accept each
	// piece, as on the h2c side.
	writeChunk = 64 << 10
)

// http1Server serves a listener's HTTP/1.1 connections. It has no
// WriteTimeout nor ReadTimeout (they would cut a long but healthy
// exchange): each write and each body read instead gets a deadline of its
// own (streamDeadlines).
func http1Server(h http.Handler, writeTimeout, idleBody time.Duration) *http.Server {
	if writeTimeout <= 0 {
		writeTimeout = h2.DefaultWriteTimeout
	}
	if idleBody <= 0 {
		idleBody = DefaultStreamIdleTimeout
	}
	var p http.Protocols
	p.SetHTTP1(true)
	return &http.Server{
		Handler: streamDeadlines(h, writeTimeout, idleBody), Protocols: &p,
		ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout,
		// net/http reads up to 4 KiB past MaxHeaderBytes before it
		// gives up; take that off so that the limit is Envoy's.
		MaxHeaderBytes: maxHeaderBlock - 4<<10,
	}
}

// streamDeadlines gives every write of an HTTP/1.1 answer and every read
// of its request body a deadline, so that a client that stops reading or
// sending cannot hold the handler, its upstream stream and their buffers.
// A write the client has not accepted within writeTimeout fails, net/http
// closes the connection and the handler returns; a body read that waits
// idleBody fails and the client gets 408, as Envoy's stream idle timeout
// answers before the response started. A client that keeps reading or
// sending, however slowly, is never cut.
func streamDeadlines(h http.Handler, writeTimeout, idleBody time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		dw := &deadlineWriter{ResponseWriter: w, rc: rc, timeout: writeTimeout}
		var body *idleReader
		if r.Body != nil && r.Body != http.NoBody {
			body = &idleReader{ReadCloser: r.Body, rc: rc, timeout: idleBody}
			r.Body = body
		}
		dw.extend()
		h.ServeHTTP(dw, r)
		if body != nil && body.timedOut.Load() && !dw.wrote {
			dw.Header().Set("Connection", "close")
			http.Error(dw, "stream timeout", http.StatusRequestTimeout)
		}
		// net/http flushes what is left after the handler returns.
		dw.extend()
	})
}

// idleReader moves the connection's read deadline before each read of a
// request body. net/http clears it when the body ends, before it watches
// the connection for the client going away.
type idleReader struct {
	io.ReadCloser
	rc       *http.ResponseController
	timeout  time.Duration
	deadline time.Time
	timedOut atomic.Bool // the body may be read by the upstream request's goroutine
}

func (b *idleReader) Read(p []byte) (int, error) {
	if now := time.Now(); b.deadline.Sub(now) < b.timeout {
		b.deadline = now.Add(b.timeout + b.timeout/2)
		_ = b.rc.SetReadDeadline(b.deadline)
	}
	n, err := b.ReadCloser.Read(p)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		b.timedOut.Store(true)
	}
	return n, err
}

// deadlineWriter moves the connection's write deadline before each write.
type deadlineWriter struct {
	http.ResponseWriter
	rc       *http.ResponseController
	timeout  time.Duration
	deadline time.Time
	wrote    bool // the answer has started
}

// extend makes sure a write starting now has at least timeout (to 1.5 x
// timeout) to be accepted: the deadline moves only when less than timeout
// is left, so that a busy connection does not reset its timer per write.
func (w *deadlineWriter) extend() {
	now := time.Now()
	if w.deadline.Sub(now) >= w.timeout {
		return
	}
	w.deadline = now.Add(w.timeout + w.timeout/2)
	_ = w.rc.SetWriteDeadline(w.deadline)
}

func (w *deadlineWriter) WriteHeader(code int) {
	w.extend()
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.wrote = true
	n := 0
	for len(p) > 0 {
		piece := p[:min(len(p), writeChunk)]
		w.extend()
		k, err := w.ResponseWriter.Write(piece)
		n += k
		if err != nil {
			return n, err
		}
		p = p[len(piece):]
	}
	return n, nil
}

// FlushError is what http.ResponseController.Flush calls.
func (w *deadlineWriter) FlushError() error {
	w.extend()
	return w.rc.Flush()
}

func (w *deadlineWriter) Flush() { _ = w.FlushError() }

// Unwrap lets http.ResponseController reach the connection's other
// controls.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
