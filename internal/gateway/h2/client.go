package h2

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Client windows: a response body the router buffers (up to 64 MiB)
// streams in without a WINDOW_UPDATE per frame.
const (
	clientStreamWindow = 4 << 20
	clientConnWindow   = 16 << 20
	// maxStreamID is the last client stream ID; a connection that
	// reaches it takes no new stream.
	maxStreamID = 1<<31 - 1
)

// ErrStreamRefused is a stream the server did not process (REFUSED_STREAM
// or past its GOAWAY's last stream); it is safe to retry.
var ErrStreamRefused = errors.New("h2: stream refused")

// Transport is an http.RoundTripper over h2c with prior knowledge: one
// connection per host while its concurrent streams last, the HEADERS and
// DATA of a request with a body in memory queued together and written with
// the other streams' frames in one system call.
type Transport struct {
	// DialContext opens a connection; required.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// ConnBufferLimit bounds the bytes a connection holds unsent: a
	// request body waits while the connection is past it. At least a
	// 16 KiB frame; DefaultConnBufferLimit when 0.
	ConnBufferLimit int
	// WriteTimeout closes a connection whose server has not accepted a
	// write for this long. DefaultWriteTimeout when 0.
	WriteTimeout time.Duration
	// MaxConns bounds the connections open or being dialled to all hosts
	// together, as a cluster's circuit-breaker max_connections does in
	// Envoy; 0 is no limit. As in Envoy, a host with no connection may
	// always open one, so that its requests are not left with none. A
	// request that finds its host's connections full and the limit
	// reached waits, as long as its context allows, for a stream or a
	// connection to end.
	MaxConns int
	// OnConnOverflow, if set, is called each time a request has to wait
	// for MaxConns (Envoy's upstream_cx_overflow).
	OnConnOverflow func()

	mu      sync.Mutex
	conns   map[string][]*clientConn
	dialing map[string]*dialCall
	total   int // connections open or being dialled

	waiting atomic.Int32 // requests waiting for MaxConns
	freeMu  sync.Mutex
	freed   chan struct{} // closed when a stream or connection ends while some wait
}

type dialCall struct {
	done chan struct{}
	cc   *clientConn
	err  error
}

// RoundTrip sends one request and returns when the response headers have
// come; the body streams after.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for range 3 {
		cc, err := t.conn(ctx, req.URL.Host)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := cc.roundTrip(req)
		if errors.Is(err, errConnUnusable) {
			continue // it went away between the pick and the stream
		}
		return resp, err
	}
	closeBody(req)
	return nil, ErrStreamRefused
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// conn returns a connection to addr with room for a stream, dialling one
// (once, for every caller waiting) when there is none.
func (t *Transport) conn(ctx context.Context, addr string) (*clientConn, error) {
	var freed <-chan struct{} // set once this request counts as waiting
	defer func() {
		if freed != nil {
			t.waiting.Add(-1)
		}
	}()
	for {
		t.mu.Lock()
		for _, cc := range t.conns[addr] {
			if cc.available() {
				t.mu.Unlock()
				return cc, nil
			}
		}
		call := t.dialing[addr]
		if call == nil && t.MaxConns > 0 && t.total >= t.MaxConns && len(t.conns[addr]) > 0 {
			t.mu.Unlock()
			if freed == nil {
				// Take the signal before looking again, so that a
				// stream ending in between is not missed.
				t.waiting.Add(1)
				freed = t.freedSignal()
				if t.OnConnOverflow != nil {
					t.OnConnOverflow()
				}
				continue
			}
			select {
			case <-freed:
				freed = t.freedSignal()
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if call == nil {
			call = &dialCall{done: make(chan struct{})}
			if t.dialing == nil {
				t.dialing, t.conns = map[string]*dialCall{}, map[string][]*clientConn{}
			}
			t.dialing[addr] = call
			t.total++
			go t.dial(context.WithoutCancel(ctx), addr, call)
		}
		t.mu.Unlock()
		select {
		case <-call.done:
			return call.cc, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// freedSignal returns the channel closed when a stream or connection
// next ends.
func (t *Transport) freedSignal() <-chan struct{} {
	t.freeMu.Lock()
	defer t.freeMu.Unlock()
	if t.freed == nil {
		t.freed = make(chan struct{})
	}
	return t.freed
}

// released wakes the requests waiting for MaxConns, if any: a stream or
// a connection has ended. It costs an atomic load otherwise.
func (t *Transport) released() {
	if t.waiting.Load() == 0 {
		return
	}
	t.freeMu.Lock()
	defer t.freeMu.Unlock()
	if t.freed != nil {
		close(t.freed)
		t.freed = nil
	}
}

func (t *Transport) dial(ctx context.Context, addr string, call *dialCall) {
	nc, err := t.DialContext(ctx, "tcp", addr)
	if err == nil {
		call.cc, err = newClientConn(t, addr, nc)
	}
	call.err = err
	t.mu.Lock()
	delete(t.dialing, addr)
	// A connection that failed at once may have been forgotten before
	// it was listed: listing it now would hold a MaxConns slot for good.
	listed := err == nil && !call.cc.isClosed()
	if listed {
		t.conns[addr] = append(t.conns[addr], call.cc)
	} else {
		t.total--
	}
	t.mu.Unlock()
	close(call.done)
	if !listed {
		t.released()
	}
}

func (t *Transport) forget(cc *clientConn) {
	t.mu.Lock()
	cs := t.conns[cc.addr]
	for i, c := range cs {
		if c == cc {
			t.conns[cc.addr] = append(cs[:i:i], cs[i+1:]...)
			t.total--
			break
		}
	}
	if len(t.conns[cc.addr]) == 0 {
		delete(t.conns, cc.addr)
	}
	t.mu.Unlock()
	t.released()
}

// CloseIdleConnections closes the connections with no stream and lets
// the others close when their last stream ends.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	var all []*clientConn
	for _, cs := range t.conns {
		all = append(all, cs...)
	}
	t.mu.Unlock()
	for _, cc := range all {
		cc.mu.Lock()
		cc.draining = true
		cc.closeIfIdleLocked()
		cc.mu.Unlock()
	}
}

var errConnUnusable = errors.New("h2: connection unusable")

// clientConn is one upstream connection; mu guards everything but the
// frame reader's own state.
type clientConn struct {
	t      *Transport
	addr   string
	nc     net.Conn
	fr     *http2.Framer
	frames *frameReader // reads fr, header blocks whole

	mu          sync.Mutex
	flow        sync.Cond
	w           *writer
	henc        *hpack.Encoder
	hbuf        bytes.Buffer
	streams     map[uint32]*clientStream
	nextID      uint32
	goneAway    bool
	draining    bool
	closed      bool
	err         error
	maxStreams  uint32
	sawSettings bool
	sendWindow  int64
	peerWindow  int32
	peerFrame   int
	recvWindow  int64
	recvUnacked int64
	canon       nameCache
	done        chan struct{}
}

func newClientConn(t *Transport, addr string, nc net.Conn) (*clientConn, error) {
	cc := &clientConn{t: t, addr: addr, nc: nc, streams: map[uint32]*clientStream{}, nextID: 1, maxStreams: 100,
		sendWindow: defaultWindow, peerWindow: defaultWindow, peerFrame: defaultFrameSize,
		recvWindow: clientConnWindow, canon: nameCache{}, done: make(chan struct{})}
	cc.flow.L = &cc.mu
	lim := writeLimits{buffer: t.ConnBufferLimit, timeout: t.WriteTimeout}
	if lim.buffer <= 0 {
		lim.buffer = DefaultConnBufferLimit
	}
	if lim.timeout <= 0 {
		lim.timeout = DefaultWriteTimeout
	}
	cc.w = newWriter(nc, &cc.mu, &cc.flow, lim)
	cc.henc = hpack.NewEncoder(&cc.hbuf)
	cc.fr = http2.NewFramer(nil, bufio.NewReaderSize(nc, 16<<10))
	// A DATA frame is copied out before the next read, so its struct may
	// be reused rather than allocated per frame.
	cc.fr.SetReuseFrames()
	cc.frames = newFrameReader(cc.fr)
	cc.fr.MaxHeaderListSize = 1 << 20
	cc.fr.SetMaxReadFrameSize(defaultFrameSize)
	cc.mu.Lock()
	cc.w.buf = append(cc.w.buf, ClientPreface...)
	cc.w.buf = appendSettings(cc.w.buf,
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: clientStreamWindow})
	cc.w.buf = appendWindowUpdate(cc.w.buf, 0, clientConnWindow-defaultWindow)
	err := cc.w.flushLocked()
	cc.mu.Unlock()
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("h2: preface to %s: %w", addr, err)
	}
	go cc.w.flusher(cc.done)
	go cc.readLoop()
	return cc, nil
}

func (cc *clientConn) isClosed() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.closed
}

func (cc *clientConn) available() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.usableLocked()
}

func (cc *clientConn) usableLocked() bool {
	return !cc.closed && !cc.goneAway && !cc.draining && cc.nextID < maxStreamID && uint32(len(cc.streams)) < cc.maxStreams
}

func (cc *clientConn) closeIfIdleLocked() {
	if (cc.draining || cc.goneAway) && len(cc.streams) == 0 {
		cc.closeLocked(errClosed)
	}
}

func (cc *clientConn) closeLocked(err error) {
	if cc.closed {
		return
	}
	cc.closed, cc.err = true, err
	_ = cc.nc.Close()
	close(cc.done)
	for _, cs := range cc.streams {
		cs.failLocked(err)
	}
	cc.flow.Broadcast()
	go cc.t.forget(cc)
}

// clientStream is one request's stream; guarded by its connection's lock.
type clientStream struct {
	cc   *clientConn
	id   uint32
	ctx  context.Context
	resp *http.Response // the answer of an http.Request
	// The answer of a ListRequest (list is set): status, headers and, once
	// the body has ended, trailers.
	list        bool
	lresp       ListResponse
	trailers    [][2]string
	gotHeaders  bool // resp or lresp is set
	err         error
	body        []byte
	off         int
	recvWindow  int64
	recvUnacked int64
	remoteDone  bool
	localDone   bool // END_STREAM or RST_STREAM sent
	bodyClosed  bool
	sendWindow  int64
	// wakeCh wakes the stream's goroutine, waiting for the headers or the
	// body: one channel for both, each wait looking again at what woke it.
	wakeCh chan struct{}
	rb     responseBody // resp.Body, allocated with the stream
}

func (cs *clientStream) wake() {
	select {
	case cs.wakeCh <- struct{}{}:
	default:
	}
}

// failLocked ends the stream with err, wherever it is.
func (cs *clientStream) failLocked(err error) {
	if cs.err == nil {
		cs.err = err
	}
	cs.wake()
}

// wholeBody returns the whole body when the caller set its length (the
// gateway's bodies with a length are in memory), so that it goes out with
// the headers; a body of unknown length streams.
func wholeBody(req *http.Request) ([]byte, bool, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, true, nil
	}
	if req.ContentLength < 0 {
		return nil, false, nil
	}
	if hb, ok := req.Body.(heldBody); ok {
		if b := hb.Held(); int64(len(b)) == req.ContentLength {
			_ = req.Body.Close()
			return b, true, nil
		}
	}
	b := make([]byte, req.ContentLength)
	if _, err := io.ReadFull(req.Body, b); err != nil {
		return nil, false, fmt.Errorf("h2: request body: %w", err)
	}
	_ = req.Body.Close()
	return b, true, nil
}

// heldBody is a request body already in memory (the router's buffered
// bodies): Held returns its unread bytes, and the transport sends those
// bytes rather than a copy. They must not change until the response ends.
type heldBody interface {
	io.ReadCloser
	Held() []byte
}

func (cc *clientConn) roundTrip(req *http.Request) (*http.Response, error) {
	body, whole, err := wholeBody(req)
	if err != nil {
		return nil, err
	}
	cs, err := cc.exchange(req.Context(), req, nil, body, whole)
	if err != nil {
		return nil, err
	}
	return cs.resp, nil
}

// exchange opens a stream for req (or, when req is nil, for the list
// request lr, whose body is whole), queues its headers, as much of its
// body as the windows allow and its trailers, leaves the write to the
// flusher and waits for the response headers. The rest of a body goes
// from a goroutine as window opens.
func (cc *clientConn) exchange(ctx context.Context, req *http.Request, lr *ListRequest, body []byte, whole bool) (*clientStream, error) {
	var trailer http.Header
	var src io.ReadCloser
	if req != nil {
		trailer, src = req.Trailer, req.Body
	}
	cc.mu.Lock()
	if !cc.usableLocked() {
		cc.mu.Unlock()
		return nil, errConnUnusable
	}
	cs := &clientStream{cc: cc, id: cc.nextID, ctx: ctx, wakeCh: make(chan struct{}, 1),
		recvWindow: clientStreamWindow, sendWindow: int64(cc.peerWindow), list: lr != nil}
	cc.nextID += 2
	cc.streams[cs.id] = cs
	hasTrailers := len(trailer) > 0
	endOnHeaders := whole && len(body) == 0 && !hasTrailers
	var block []byte
	if req != nil {
		block = cc.encodeRequest(req, body, whole)
	} else {
		block = cc.encodeList(lr)
	}
	cc.w.buf = appendHeaders(cc.w.buf, cs.id, block, endOnHeaders, cc.peerFrame)
	if endOnHeaders {
		cs.localDone = true
	} else if whole {
		body = cc.sendDataLocked(cs, body, !hasTrailers)
		if len(body) == 0 && hasTrailers {
			cc.sendTrailersLocked(cs, trailer)
		}
	}
	if err := cc.w.err; err != nil {
		// A dead connection: no stream may use it again.
		cc.closeLocked(fmt.Errorf("h2: write to %s: %w", cc.addr, err))
		cc.mu.Unlock()
		return nil, err
	}
	cc.w.flushLater()
	cc.mu.Unlock()
	if !whole || len(body) > 0 {
		// The rest of the body waits for window or comes from a stream.
		go cc.writeBody(cs, trailer, src, body, whole)
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for !cs.gotHeaders && cs.err == nil {
		cc.mu.Unlock()
		select {
		case <-cs.wakeCh:
			cc.mu.Lock()
		case <-ctx.Done():
			cc.mu.Lock()
			cc.resetLocked(cs, http2.ErrCodeCancel, ctx.Err())
			_ = cc.w.flushLocked()
			return nil, ctx.Err()
		}
	}
	if !cs.gotHeaders {
		return nil, cs.err
	}
	return cs, nil
}

// sendDataLocked queues as much of p as the windows allow and returns the
// rest; end marks the last frame END_STREAM.
func (cc *clientConn) sendDataLocked(cs *clientStream, p []byte, end bool) []byte {
	for len(p) > 0 {
		n := min(int64(min(len(p), cc.peerFrame)), cs.sendWindow, cc.sendWindow)
		if n <= 0 {
			return p
		}
		if n = int64(cc.w.roomLocked(int(n))); n == 0 {
			return p // the connection holds its limit unsent
		}
		last := end && int(n) == len(p)
		cc.w.buf = appendData(cc.w.buf, cs.id, p[:n], last)
		cs.sendWindow -= n
		cc.sendWindow -= n
		p = p[n:]
		if last {
			cc.localDoneLocked(cs)
		}
	}
	if end && !cs.localDone {
		cc.w.buf = appendData(cc.w.buf, cs.id, nil, true)
		cc.localDoneLocked(cs)
	}
	return nil
}

func (cc *clientConn) sendTrailersLocked(cs *clientStream, tr http.Header) {
	cc.hbuf.Reset()
	for k, vs := range tr {
		name := strings.ToLower(k)
		for _, v := range vs {
			_ = cc.henc.WriteField(hpack.HeaderField{Name: name, Value: v})
		}
	}
	cc.w.buf = appendHeaders(cc.w.buf, cs.id, cc.hbuf.Bytes(), true, cc.peerFrame)
	cc.localDoneLocked(cs)
}

// writeBody sends a body that did not fit the windows, or one that
// streams, frame by frame as window opens.
func (cc *clientConn) writeBody(cs *clientStream, trailer http.Header, src io.ReadCloser, rest []byte, whole bool) {
	hasTrailers := len(trailer) > 0
	// The waits below end with the request's context too.
	stopWake := context.AfterFunc(cs.ctx, func() {
		cc.mu.Lock()
		cc.flow.Broadcast()
		cc.mu.Unlock()
	})
	defer stopWake()
	stop := func() bool { return cs.localDone || cc.closed || cs.ctx.Err() != nil }
	send := func(p []byte, end bool) error {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		for {
			if err := cs.ctx.Err(); err != nil && !cs.localDone {
				cc.resetLocked(cs, http2.ErrCodeCancel, err)
				_ = cc.w.flushLocked()
			}
			if cs.localDone || cc.closed {
				return errClosed
			}
			p = cc.sendDataLocked(cs, p, end && !hasTrailers)
			if len(p) == 0 {
				if end && hasTrailers {
					cc.sendTrailersLocked(cs, trailer)
				}
				return cc.w.flushLocked()
			}
			// flushLocked lets go of the lock while it writes: the
			// window may have opened meanwhile, so look before waiting.
			_ = cc.w.flushLocked()
			for (cs.sendWindow <= 0 || cc.sendWindow <= 0) && !stop() {
				cc.flow.Wait()
			}
			if err := cc.w.waitRoomLocked(min(len(p), cc.peerFrame), stop); err != nil {
				return err
			}
		}
	}
	if whole {
		_ = send(rest, true)
		return
	}
	defer src.Close()
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if send(buf[:n], false) != nil {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			_ = send(nil, true)
			return
		}
		if err != nil {
			cc.mu.Lock()
			cc.resetLocked(cs, http2.ErrCodeCancel, err)
			_ = cc.w.flushLocked()
			cc.mu.Unlock()
			return
		}
	}
}

// encodeRequest encodes the request's header block.
func (cc *clientConn) encodeRequest(req *http.Request, body []byte, whole bool) []byte {
	cc.hbuf.Reset()
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	path := req.URL.RequestURI()
	scheme := req.URL.Scheme
	if scheme == "" {
		scheme = "http"
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	write := func(k, v string) {
		// A request id is new on every request: indexed, it would only
		// push the fields that do repeat out of the peer's table.
		_ = cc.henc.WriteField(hpack.HeaderField{Name: k, Value: v, Sensitive: k == "x-request-id"})
	}
	write(":method", method)
	write(":scheme", scheme)
	write(":authority", host)
	write(":path", path)
	for k, vs := range req.Header {
		name := k
		if !isLower(k) {
			name = strings.ToLower(k)
		}
		if connectionSpecific(name) || name == "host" || name == "content-length" || (name == "te" && !teTrailers(vs)) ||
			(name == "trailer" && len(req.Trailer) > 0) {
			continue
		}
		for _, v := range vs {
			write(name, v)
		}
	}
	if len(req.Trailer) > 0 {
		// Declared as Go's transport declares them: Go's server keeps
		// only the trailers a request announces.
		names := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			names = append(names, strings.ToLower(k))
		}
		sort.Strings(names)
		write("trailer", strings.Join(names, ","))
	}
	if whole && (len(body) > 0 || (method != http.MethodGet && method != http.MethodHead)) {
		write("content-length", strconv.Itoa(len(body)))
	}
	return cc.hbuf.Bytes()
}

func teTrailers(vs []string) bool { return len(vs) == 1 && vs[0] == "trailers" }

func isLower(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return false
		}
	}
	return true
}

// resetLocked sends RST_STREAM and ends the stream with err.
func (cc *clientConn) resetLocked(cs *clientStream, code http2.ErrCode, err error) {
	if cc.streams[cs.id] != cs {
		return
	}
	if !cs.localDone || !cs.remoteDone {
		cc.w.buf = appendRST(cc.w.buf, cs.id, code)
	}
	cs.localDone = true
	cs.failLocked(err)
	cc.removeLocked(cs, false)
}

// removeLocked forgets a finished stream and returns its unread body's
// bytes to the connection window; keep leaves them to the reader.
func (cc *clientConn) removeLocked(cs *clientStream, keep bool) {
	if cc.streams[cs.id] != cs {
		return
	}
	delete(cc.streams, cs.id)
	cc.t.released()
	cc.refundLocked(int64(len(cs.body) - cs.off))
	if !keep {
		cs.body, cs.off = nil, 0
	}
	cc.flow.Broadcast()
	cc.closeIfIdleLocked()
}

// localDoneLocked marks the request sent; a stream done both ways goes.
func (cc *clientConn) localDoneLocked(cs *clientStream) {
	cs.localDone = true
	if cs.remoteDone {
		cc.removeLocked(cs, true)
	}
}

func (cc *clientConn) refundLocked(n int64) {
	cc.recvUnacked += n
	if cc.recvUnacked >= clientConnWindow/2 {
		cc.w.buf = appendWindowUpdate(cc.w.buf, 0, uint32(cc.recvUnacked))
		cc.recvWindow += cc.recvUnacked
		cc.recvUnacked = 0
	}
}
