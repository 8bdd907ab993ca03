package h2

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Server defaults.
const (
	// DefaultMaxStreams bounds a connection's concurrent streams.
	DefaultMaxStreams = 1000
	// DefaultMaxHeaderList is Envoy's max_request_headers_kb default
	// (60 KiB), the largest request header list accepted.
	DefaultMaxHeaderList = 60 << 10
	// DefaultStreamWindow is a stream's receive window: the most of a
	// request body held for a handler that has not read it, Envoy's
	// per-stream buffer limit.
	DefaultStreamWindow = 1 << 20
	// connWindow is the connection's receive window.
	connWindow = 16 << 20
	// prefaceTimeout bounds the wait for a client's preface and SETTINGS.
	prefaceTimeout = 10 * time.Second
	// flushAt is how much response body is held before it is sent
	// without an explicit flush.
	flushAt = 16 << 10
	// startAfter bounds how much a peer that never lets the read buffer
	// empty can send before the handlers of its new streams start.
	startAfter = 64 << 10
	// DefaultConnBufferLimit is the most response DATA a connection holds
	// unsent: Envoy's per_connection_buffer_limit_bytes default (1 MiB).
	DefaultConnBufferLimit = 1 << 20
	// DefaultWriteTimeout is how long a peer may leave a write unaccepted
	// before its connection is closed. It is far above what a healthy
	// reader stalls for (a GC pause, a loaded scheduler, TCP's
	// retransmission back-off after a loss: 1+2+4+8 s) and far below
	// Envoy's stream_idle_timeout (5 min), which is what would otherwise
	// free a stuck peer's streams.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultBodyIdleTimeout is Envoy's stream_idle_timeout default.
	DefaultBodyIdleTimeout = 5 * time.Minute
)

// ServerConfig configures a Server.
type ServerConfig struct {
	Handler http.Handler
	// MaxConcurrentStreams; DefaultMaxStreams when 0.
	MaxConcurrentStreams uint32
	// MaxHeaderListSize; DefaultMaxHeaderList when 0.
	MaxHeaderListSize uint32
	// StreamWindow; DefaultStreamWindow when 0.
	StreamWindow int32
	// ConnBufferLimit bounds the bytes a connection holds unsent: a
	// handler's DATA waits while the connection is past it. At least a
	// 16 KiB frame; DefaultConnBufferLimit when 0.
	ConnBufferLimit int
	// WriteTimeout closes a connection whose peer has not accepted a
	// write for this long. DefaultWriteTimeout when 0.
	WriteTimeout time.Duration
	// BodyIdleTimeout ends a request body read that has waited this long
	// for DATA; a handler that has not answered then gets 408 "stream
	// timeout", as Envoy's stream_idle_timeout answers.
	// DefaultBodyIdleTimeout when 0.
	BodyIdleTimeout time.Duration
	// Logger for handler panics; slog.Default() when nil.
	Logger *slog.Logger
}

// HeaderListHandler is an http.Handler that takes a request's header
// fields as the list they came in: lower-case names, in order, without
// pseudo-headers. The server then leaves r.Header nil, which spares it
// building a map the handler would only turn back into a list (the
// router's requests are such lists).
type HeaderListHandler interface {
	http.Handler
	ServeHeaderList(w http.ResponseWriter, r *http.Request, fields [][2]string)
}

// Server serves h2c connections with an http.Handler.
type Server struct {
	cfg  ServerConfig
	list HeaderListHandler // cfg.Handler, if it is one
	date atomic.Pointer[dateCache]

	mu       sync.Mutex
	conns    map[*serverConn]struct{}
	shutdown bool
	idle     chan struct{} // closed when shut down and no connection is left

	// Handlers run on reused goroutines: a fresh one per stream would
	// grow its stack through the filter chain's deep calls every time.
	work     chan *serverStream
	quit     chan struct{}
	quitOnce sync.Once
}

// workerIdle is how long a handler goroutine waits for another stream.
const workerIdle = 2 * time.Second

func (s *Server) run(st *serverStream) {
	select {
	case s.work <- st:
	default:
		go s.worker(st)
	}
}

func (s *Server) worker(st *serverStream) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		st.c.runStream(st)
		t.Reset(workerIdle)
		select {
		case st = <-s.work:
		case <-t.C:
			return
		case <-s.quit:
			return
		}
	}
}

func (s *Server) stopWorkers() { s.quitOnce.Do(func() { close(s.quit) }) }

type dateCache struct {
	sec int64
	val string
}

// NewServer returns a server for cfg.
func NewServer(cfg ServerConfig) *Server {
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = DefaultMaxStreams
	}
	if cfg.MaxHeaderListSize == 0 {
		cfg.MaxHeaderListSize = DefaultMaxHeaderList
	}
	if cfg.StreamWindow <= 0 {
		cfg.StreamWindow = DefaultStreamWindow
	}
	if cfg.ConnBufferLimit <= 0 {
		cfg.ConnBufferLimit = DefaultConnBufferLimit
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.BodyIdleTimeout <= 0 {
		cfg.BodyIdleTimeout = DefaultBodyIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, conns: map[*serverConn]struct{}{}, idle: make(chan struct{}),
		work: make(chan *serverStream), quit: make(chan struct{})}
	s.list, _ = cfg.Handler.(HeaderListHandler)
	return s
}

// httpDate is the Date header value, formatted once a second.
func (s *Server) httpDate() string {
	now := time.Now()
	if d := s.date.Load(); d != nil && d.sec == now.Unix() {
		return d.val
	}
	d := &dateCache{sec: now.Unix(), val: now.UTC().Format(http.TimeFormat)}
	s.date.Store(d)
	return d.val
}

// ServeConn serves one connection whose client preface has already been
// read, until it closes. It returns at once when the server is shut down.
func (s *Server) ServeConn(nc net.Conn) {
	c := newServerConn(s, nc)
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	c.serve()
	s.mu.Lock()
	delete(s.conns, c)
	if s.shutdown && len(s.conns) == 0 {
		select {
		case <-s.idle:
		default:
			close(s.idle)
		}
	}
	s.mu.Unlock()
}

// Shutdown sends every connection a GOAWAY, lets the streams in flight
// finish and closes each connection when it has none; past ctx's end the
// rest are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	if len(s.conns) == 0 {
		select {
		case <-s.idle:
		default:
			close(s.idle)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAway(http2.ErrCodeNo)
	}
	select {
	case <-s.idle:
		s.stopWorkers()
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close closes every connection at once.
func (s *Server) Close() {
	s.mu.Lock()
	s.shutdown = true
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.nc.Close()
	}
	s.stopWorkers()
}

// connError ends the connection with a GOAWAY carrying code.
type connError struct {
	code http2.ErrCode
	msg  string
}

func (e connError) Error() string { return fmt.Sprintf("h2: connection error %v: %s", e.code, e.msg) }

// serverConn is one downstream connection. The frame reader owns the
// read side; mu guards the rest, the write queue included, so that the
// HPACK encoder's state follows the order of the bytes on the wire.
type serverConn struct {
	srv    *Server
	nc     net.Conn
	br     *bufio.Reader
	fr     *http2.Framer
	frames *frameReader // reads fr, header blocks whole
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	remote string

	mu           sync.Mutex
	flow         sync.Cond // signalled when a send window opens or a stream ends
	w            *writer
	henc         *hpack.Encoder
	hbuf         bytes.Buffer
	streams      map[uint32]*serverStream
	lastID       uint32 // the highest stream the client opened
	goneAway     bool   // a GOAWAY was sent; no new stream is served
	peerGoneAway bool
	closed       bool
	sendWindow   int64 // the connection's send window
	peerWindow   int32 // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame    int   // the peer's SETTINGS_MAX_FRAME_SIZE
	recvWindow   int64 // what the peer may still send on the connection
	recvUnacked  int64 // consumed bytes not yet returned by WINDOW_UPDATE
	pending      []*serverStream
	handlers     sync.WaitGroup
	lower        nameCache // canonical -> lower-case response names
	canon        nameCache // lower-case -> canonical request names
}

func newServerConn(s *Server, nc net.Conn) *serverConn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &serverConn{srv: s, nc: nc, ctx: ctx, cancel: cancel, done: make(chan struct{}), remote: nc.RemoteAddr().String(),
		streams: map[uint32]*serverStream{}, sendWindow: defaultWindow, peerWindow: defaultWindow,
		peerFrame: defaultFrameSize, recvWindow: connWindow, lower: nameCache{}, canon: nameCache{}}
	c.flow.L = &c.mu
	c.w = newWriter(nc, &c.mu, &c.flow, writeLimits{buffer: s.cfg.ConnBufferLimit, timeout: s.cfg.WriteTimeout})
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.br = bufio.NewReaderSize(nc, 16<<10)
	c.fr = http2.NewFramer(nil, c.br)
	// A DATA frame is copied out before the next read, so its struct may
	// be reused rather than allocated per frame.
	c.fr.SetReuseFrames()
	c.frames = newFrameReader(c.fr)
	c.fr.MaxHeaderListSize = s.cfg.MaxHeaderListSize
	c.fr.SetMaxReadFrameSize(defaultFrameSize)
	return c
}

func (c *serverConn) serve() {
	defer func() {
		c.mu.Lock()
		c.closeLocked()
		c.mu.Unlock()
		c.handlers.Wait()
		close(c.done)
	}()
	go c.w.flusher(c.ctx.Done())
	c.mu.Lock()
	c.w.buf = appendSettings(c.w.buf,
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.srv.cfg.MaxConcurrentStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(c.srv.cfg.StreamWindow)},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.srv.cfg.MaxHeaderListSize})
	c.w.buf = appendWindowUpdate(c.w.buf, 0, connWindow-defaultWindow)
	c.w.flushLater()
	c.mu.Unlock()

	_ = c.nc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	f, err := c.frames.readFrame()
	if err != nil {
		return
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		c.fail(connError{http2.ErrCodeProtocol, "first frame is not SETTINGS"})
		return
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	read := 0 // bytes read since the pending handlers last started
	// Declared once: errors.As makes it escape, and a declaration in the
	// loop would cost an allocation per frame.
	var se http2.StreamError
	for {
		if err == nil && f != nil {
			read += int(f.Header().Length)
			c.mu.Lock()
			err = c.process(f)
			c.w.flushLater()
			c.mu.Unlock()
		}
		if err != nil {
			c.fail(err)
			return
		}
		if c.br.Buffered() == 0 || read >= startAfter {
			// Nothing more has come (or a busy peer has sent a lot):
			// start the handlers of the streams opened so far, each
			// with all of its body that is here.
			c.startPending()
			read = 0
		}
		f, err = c.frames.readFrame()
		if err != nil && errors.As(err, &se) {
			c.mu.Lock()
			if se.StreamID > c.lastID && se.StreamID%2 == 1 {
				c.lastID = se.StreamID // a malformed request still used its id
			}
			c.resetLocked(se.StreamID, se.Code)
			c.w.flushLater()
			c.mu.Unlock()
			f, err = nil, nil
		}
	}
}

// fail ends the connection: a protocol error is answered with a GOAWAY
// naming it, written within a second, then the socket is closed.
func (c *serverConn) fail(err error) {
	var ce connError
	var h2ce http2.ConnectionError
	code, send := http2.ErrCodeProtocol, false
	switch {
	case errors.As(err, &ce):
		code, send = ce.code, true
	case errors.As(err, &h2ce):
		code, send = http2.ErrCode(h2ce), true
	case errors.Is(err, http2.ErrFrameTooLarge):
		code, send = http2.ErrCodeFrameSize, true
	}
	c.mu.Lock()
	if send && !c.closed {
		c.w.buf = appendGoAway(c.w.buf, c.lastID, code)
		c.w.closingDeadline(time.Second)
		_ = c.w.drainLocked()
	}
	c.closeLocked()
	c.mu.Unlock()
}

// closeLocked tears the connection down: every stream is cancelled and
// every waiter woken.
func (c *serverConn) closeLocked() {
	if c.closed {
		return
	}
	c.closed = true
	c.cancel()
	_ = c.nc.Close()
	for _, st := range c.streams {
		st.resetErr = errClosed
		st.cancel()
		st.wake()
	}
	for _, st := range c.pending {
		st.cancel()
	}
	c.pending = nil
	c.flow.Broadcast()
}

// goAway stops new streams; the connection closes once the streams in
// flight have finished.
func (c *serverConn) goAway(code http2.ErrCode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.goneAway || c.closed {
		return
	}
	c.goneAway = true
	c.w.buf = appendGoAway(c.w.buf, c.lastID, code)
	c.w.flushLater()
	c.closeIfIdleLocked()
}

func (c *serverConn) closeIfIdleLocked() {
	if (c.goneAway || c.peerGoneAway) && len(c.streams) == 0 && len(c.pending) == 0 && !c.closed {
		// Let the queued frames (the last response, the GOAWAY) out first.
		c.w.closingDeadline(time.Second)
		_ = c.w.drainLocked()
		c.closeLocked()
	}
}

func (c *serverConn) startPending() {
	c.mu.Lock()
	ps := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, st := range ps {
		c.handlers.Add(1)
		c.srv.run(st)
	}
}

// process handles one frame with c.mu held. A returned error ends the
// connection.
func (c *serverConn) process(f http2.Frame) error {
	if c.closed {
		return errClosed
	}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		if f.StreamID > c.lastID {
			return connError{http2.ErrCodeProtocol, "RST_STREAM on an idle stream"}
		}
		if st := c.streams[f.StreamID]; st != nil {
			st.resetErr = fmt.Errorf("h2: stream reset by peer: %v", f.ErrCode)
			st.localDone = true
			c.closeStreamLocked(st)
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			c.w.buf = appendPingAck(c.w.buf, f.Data)
		}
	case *http2.GoAwayFrame:
		c.peerGoneAway = true
		c.closeIfIdleLocked()
	case *http2.PriorityFrame:
		if f.StreamID == f.StreamDep {
			c.resetLocked(f.StreamID, http2.ErrCodeProtocol)
		}
	case *http2.PushPromiseFrame:
		return connError{http2.ErrCodeProtocol, "PUSH_PROMISE from a client"}
	}
	if c.w.overloaded(0) {
		return connError{http2.ErrCodeEnhanceYourCalm, "peer does not read"}
	}
	return nil
}

func (c *serverConn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - int64(c.peerWindow)
			c.peerWindow = int32(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > maxWindow {
					return connError{http2.ErrCodeFlowControl, "stream window overflow"}
				}
			}
			c.flow.Broadcast()
		case http2.SettingMaxFrameSize:
			c.peerFrame = int(s.Val)
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.w.buf = appendSettingsAck(c.w.buf)
	return nil
}

func (c *serverConn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	if f.StreamID == 0 {
		if f.Increment == 0 {
			return connError{http2.ErrCodeProtocol, "zero WINDOW_UPDATE"}
		}
		c.sendWindow += int64(f.Increment)
		if c.sendWindow > maxWindow {
			return connError{http2.ErrCodeFlowControl, "connection window overflow"}
		}
		c.flow.Broadcast()
		return nil
	}
	if f.StreamID > c.lastID {
		return connError{http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream"}
	}
	st := c.streams[f.StreamID]
	if st == nil {
		return nil
	}
	if f.Increment == 0 {
		c.resetLocked(f.StreamID, http2.ErrCodeProtocol)
		return nil
	}
	st.sendWindow += int64(f.Increment)
	if st.sendWindow > maxWindow {
		c.resetLocked(f.StreamID, http2.ErrCodeFlowControl)
		return nil
	}
	c.flow.Broadcast()
	return nil
}

func (c *serverConn) onData(f *http2.DataFrame) error {
	n := int64(f.Length) // padding included, as flow control counts it
	if f.StreamID == 0 {
		return connError{http2.ErrCodeProtocol, "DATA on stream 0"}
	}
	if f.StreamID > c.lastID {
		return connError{http2.ErrCodeProtocol, "DATA on an idle stream"}
	}
	if n > c.recvWindow {
		return connError{http2.ErrCodeFlowControl, "connection window exceeded"}
	}
	c.recvWindow -= n
	st := c.streams[f.StreamID]
	if st == nil || st.remoteDone {
		// Its data still counts against the connection's window,
		// returned at once. A closed stream's is ignored (the rest of a
		// body this side stopped wanting); one past END_STREAM is an error.
		c.refundLocked(n)
		if st != nil {
			c.resetLocked(f.StreamID, http2.ErrCodeStreamClosed)
		}
		return nil
	}
	if n > st.recvWindow {
		c.refundLocked(n)
		c.resetLocked(f.StreamID, http2.ErrCodeFlowControl)
		return nil
	}
	st.recvWindow -= n
	data := f.Data()
	if pad := n - int64(len(data)); pad > 0 {
		c.refundLocked(pad)
		st.recvUnacked += pad
	}
	st.received += int64(len(data))
	if st.declared >= 0 && st.received > st.declared {
		c.refundLocked(int64(len(data)))
		c.resetLocked(f.StreamID, http2.ErrCodeProtocol)
		return nil
	}
	st.body = append(st.body, data...)
	if f.StreamEnded() {
		if st.declared >= 0 && st.received != st.declared {
			c.resetLocked(f.StreamID, http2.ErrCodeProtocol)
			return nil
		}
		st.remoteDone = true
	}
	st.wake()
	return nil
}

// refundLocked returns n consumed bytes to the connection's window,
// batched to half the window.
func (c *serverConn) refundLocked(n int64) {
	c.recvUnacked += n
	if c.recvUnacked >= connWindow/2 {
		c.w.buf = appendWindowUpdate(c.w.buf, 0, uint32(c.recvUnacked))
		c.recvWindow += c.recvUnacked
		c.recvUnacked = 0
	}
}

// resetLocked sends RST_STREAM and ends the stream if it is open.
func (c *serverConn) resetLocked(id uint32, code http2.ErrCode) {
	st := c.streams[id]
	if st != nil && st.localDone {
		return
	}
	c.w.buf = appendRST(c.w.buf, id, code)
	if st != nil {
		st.resetErr = fmt.Errorf("h2: stream reset: %v", code)
		st.localDone = true
		c.closeStreamLocked(st)
	}
}

// closeStreamLocked removes a stream: its context ends, its unread body
// goes back to the connection's window and its waiters wake.
func (c *serverConn) closeStreamLocked(st *serverStream) {
	if c.streams[st.id] != st {
		return
	}
	delete(c.streams, st.id)
	st.cancel()
	c.refundLocked(int64(len(st.body) - st.off))
	st.body, st.off = nil, 0
	st.wake()
	c.flow.Broadcast()
	c.closeIfIdleLocked()
}
