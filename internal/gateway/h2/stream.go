package h2

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// serverStream is one request. Its fields are guarded by the
// connection's lock.
type serverStream struct {
	c      *serverConn
	id     uint32
	req    *http.Request
	cancel context.CancelFunc

	body        []byte // received, not yet read (from off)
	off         int
	received    int64
	declared    int64 // content-length, or -1
	recvWindow  int64
	recvUnacked int64
	remoteDone  bool // END_STREAM received
	bodyClosed  bool
	bodyIdle    bool // a body read waited BodyIdleTimeout for DATA
	// readWake wakes a body read waiting for DATA; made by the first read
	// that has to wait (a unary request's body is mostly there already),
	// under the connection's lock, under which wake sends.
	readWake chan struct{}

	sendWindow int64
	localDone  bool  // END_STREAM or RST_STREAM sent
	resetErr   error // why the stream ended early

	// The request body and response writer live in the stream: one
	// allocation per request rather than three.
	rb requestBody
	rw responseWriter
	// fields are the request's header fields for a HeaderListHandler.
	fields [][2]string
}

// wake wakes a waiting body read; called with the connection's lock held
// (a nil readWake: no read has waited, and the next looks first).
func (st *serverStream) wake() {
	select {
	case st.readWake <- struct{}{}:
	default:
	}
}

// connection-specific header fields, malformed in HTTP/2 (RFC 9113 §8.2.2).
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

func (c *serverConn) canonical(lower string) string {
	return c.canon.get(lower, http.CanonicalHeaderKey)
}

func (c *serverConn) lowerName(canon string) string { return c.lower.get(canon, strings.ToLower) }

func (c *serverConn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return connError{http2.ErrCodeProtocol, "HEADERS on an even stream"}
	}
	if st := c.streams[id]; st != nil {
		return c.onTrailers(st, f)
	}
	if id <= c.lastID {
		// A stream already closed, perhaps reset by this side while the
		// client's trailers were on their way: ignored (RFC 9113 §5.4.2).
		return nil
	}
	c.lastID = id
	if c.goneAway || uint32(len(c.streams)) >= c.srv.cfg.MaxConcurrentStreams {
		c.w.buf = appendRST(c.w.buf, id, http2.ErrCodeRefusedStream)
		return nil
	}
	if f.Truncated {
		c.hbuf.Reset()
		_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "431"})
		c.w.buf = appendHeaders(c.w.buf, id, c.hbuf.Bytes(), true, c.peerFrame)
		if !f.StreamEnded() {
			c.w.buf = appendRST(c.w.buf, id, http2.ErrCodeNo)
		}
		return nil
	}
	method, path, authority := f.PseudoValue("method"), f.PseudoValue("path"), f.PseudoValue("authority")
	if method == "" || path == "" || f.PseudoValue("scheme") == "" || method == http.MethodConnect {
		c.w.buf = appendRST(c.w.buf, id, http2.ErrCodeProtocol)
		return nil
	}
	u, err := url.ParseRequestURI(path)
	if err != nil {
		c.w.buf = appendRST(c.w.buf, id, http2.ErrCodeProtocol)
		return nil
	}
	regular := f.RegularFields()
	var hb headerBuilder
	var list [][2]string
	if c.srv.list != nil {
		list = make([][2]string, 0, len(regular))
	} else {
		hb = newHeaderBuilder(len(regular))
	}
	declared := int64(-1)
	for _, hf := range regular {
		if connectionSpecific(hf.Name) || (hf.Name == "te" && hf.Value != "trailers") {
			c.w.buf = appendRST(c.w.buf, id, http2.ErrCodeProtocol)
			return nil
		}
		switch hf.Name {
		case "host":
			if authority == "" {
				authority = hf.Value
			}
		case "content-length":
			n, err := strconv.ParseInt(hf.Value, 10, 64)
			if err != nil || n < 0 || (declared >= 0 && n != declared) {
				c.w.buf = appendRST(c.w.buf, id, http2.ErrCodeProtocol)
				return nil
			}
			declared = n
		}
		if list != nil {
			list = append(list, [2]string{hf.Name, hf.Value})
		} else {
			hb.add(c.canonical(hf.Name), hf.Value)
		}
	}
	h := hb.h
	// Not a child of c.ctx: that would put every stream in one map under
	// the connection context's lock, taken by the reader and the handlers
	// alike. closeLocked cancels each stream instead, as the parent would.
	ctx, cancel := context.WithCancel(context.Background())
	st := &serverStream{c: c, id: id, cancel: cancel, declared: declared,
		recvWindow: int64(c.srv.cfg.StreamWindow), sendWindow: int64(c.peerWindow)}
	st.rb.st, st.rw.st, st.fields = st, st, list
	req := &http.Request{Method: method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: h,
		Body: &st.rb, ContentLength: declared, Host: authority, RemoteAddr: c.remote, RequestURI: path}
	if f.StreamEnded() {
		if declared > 0 {
			cancel()
			c.w.buf = appendRST(c.w.buf, id, http2.ErrCodeProtocol)
			return nil
		}
		st.remoteDone = true
		req.Body, req.ContentLength = http.NoBody, 0
	}
	st.req = req.WithContext(ctx)
	c.streams[id] = st
	c.pending = append(c.pending, st)
	return nil
}

func (c *serverConn) onTrailers(st *serverStream, f *http2.MetaHeadersFrame) error {
	if st.remoteDone {
		c.resetLocked(st.id, http2.ErrCodeStreamClosed)
		return nil
	}
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 || (st.declared >= 0 && st.received != st.declared) {
		c.resetLocked(st.id, http2.ErrCodeProtocol)
		return nil
	}
	tb := newHeaderBuilder(len(f.Fields))
	for _, hf := range f.RegularFields() {
		tb.add(c.canonical(hf.Name), hf.Value)
	}
	st.req.Trailer = tb.h
	st.remoteDone = true
	st.wake()
	return nil
}

func (c *serverConn) runStream(st *serverStream) {
	defer c.handlers.Done()
	rw := &st.rw
	defer func() {
		if r := recover(); r != nil {
			if r != http.ErrAbortHandler { //nolint:errorlint // the sentinel is panicked, not wrapped
				c.srv.cfg.Logger.Error("h2: handler panic", "panic", r, "stack", string(debug.Stack()))
			}
			c.mu.Lock()
			c.resetLocked(st.id, http2.ErrCodeInternal)
			_ = c.w.flushLocked()
			c.mu.Unlock()
		}
	}()
	if c.srv.list != nil {
		c.srv.list.ServeHeaderList(rw, st.req, st.fields)
	} else {
		c.srv.cfg.Handler.ServeHTTP(rw, st.req)
	}
	c.mu.Lock()
	idle := st.bodyIdle
	c.mu.Unlock()
	if idle && !rw.wroteHeader {
		http.Error(rw, "stream timeout", http.StatusRequestTimeout)
	}
	rw.finish()
}

// requestBody reads a stream's DATA as the handler asks for it; each read
// returns window to the peer.
type requestBody struct{ st *serverStream }

func (b *requestBody) Read(p []byte) (int, error) {
	st := b.st
	c := st.c
	c.mu.Lock()
	for {
		if st.off < len(st.body) {
			n := copy(p, st.body[st.off:])
			st.off += n
			if st.off == len(st.body) {
				st.body, st.off = st.body[:0], 0
			}
			c.consumedLocked(st, int64(n))
			c.mu.Unlock()
			return n, nil
		}
		switch {
		case st.bodyClosed:
			c.mu.Unlock()
			return 0, http.ErrBodyReadAfterClose
		case st.remoteDone:
			c.mu.Unlock()
			return 0, io.EOF
		case st.resetErr != nil:
			err := st.resetErr
			c.mu.Unlock()
			return 0, err
		case c.closed:
			c.mu.Unlock()
			return 0, errClosed
		}
		if st.readWake == nil {
			st.readWake = make(chan struct{}, 1)
		}
		c.mu.Unlock()
		if !st.waitData(c.srv.cfg.BodyIdleTimeout) {
			c.mu.Lock()
			st.bodyIdle = true
			c.mu.Unlock()
			return 0, ErrBodyIdle
		}
		c.mu.Lock()
	}
}

// ErrBodyIdle is the error of a request body read that waited the
// server's BodyIdleTimeout without DATA.
var ErrBodyIdle = errors.New("h2: request body idle past the stream idle timeout")

// waitData waits for the stream to be woken, at most d; the timer is made
// only when a read has to wait, which a unary request's read seldom does.
func (st *serverStream) waitData(d time.Duration) bool {
	select {
	case <-st.readWake:
		return true
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-st.readWake:
		return true
	case <-t.C:
		return false
	}
}

func (b *requestBody) Close() error {
	st := b.st
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !st.bodyClosed {
		st.bodyClosed = true
		c.refundLocked(int64(len(st.body) - st.off))
		st.body, st.off = nil, 0
	}
	return nil
}

// consumedLocked returns n read bytes to the stream's and the
// connection's windows, each once half of it is used, so a unary
// request costs no WINDOW_UPDATE.
func (c *serverConn) consumedLocked(st *serverStream, n int64) {
	c.refundLocked(n)
	st.recvUnacked += n
	if !st.remoteDone && st.recvUnacked >= int64(c.srv.cfg.StreamWindow)/2 {
		c.w.buf = appendWindowUpdate(c.w.buf, st.id, uint32(st.recvUnacked))
		st.recvWindow += st.recvUnacked
		st.recvUnacked = 0
	}
	c.w.flushLater()
}

// responseWriter is a stream's http.ResponseWriter. The body is held until
// the handler flushes, returns or writes flushAt bytes; the headers, body
// and trailers of a response written at once go out in one system call.
type responseWriter struct {
	st          *serverStream
	hdr         http.Header
	status      int
	wroteHeader bool
	sentHeader  bool
	done        bool
	buf         []byte
	// The header and trailer lists of WriteBuffered, lower-case, sent
	// after those of hdr.
	flat, flatTrailers [][2]string
	borrowed           bool // buf is WriteBuffered's body, not to be reused
}

// WriteBuffered answers with a whole response held as header lists:
// status code, the headers (lower-case names, no pseudo-headers), the body
// and the trailers. It is WriteHeader and Write with the headers set in
// Header() (trailers as http.TrailerPrefix keys), without building the map:
// a buffering proxy holds its responses as such lists. The response goes
// out when the handler returns; the lists and body must stay unchanged
// until then.
func (rw *responseWriter) WriteBuffered(code int, headers [][2]string, body []byte, trailers [][2]string) {
	if rw.done {
		return
	}
	if !rw.wroteHeader {
		rw.WriteHeader(code)
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK) // an informational code, as Write would
	}
	rw.flat, rw.flatTrailers = headers, trailers
	if rw.bodyAllowed() && len(body) > 0 {
		if len(rw.buf) > 0 {
			rw.buf = append(rw.buf, body...)
		} else {
			// Sent from the caller's array rather than copied; capped,
			// so that a Write before the send copies out of it.
			rw.buf, rw.borrowed = body[:len(body):len(body)], true
		}
	}
}

// Header makes the map on first use: a handler that answers with
// WriteBuffered never needs one.
func (rw *responseWriter) Header() http.Header {
	if rw.hdr == nil {
		rw.hdr = make(http.Header, 4)
	}
	return rw.hdr
}

func (rw *responseWriter) WriteHeader(code int) {
	if rw.wroteHeader || rw.done {
		return
	}
	if code < 100 || code > 999 {
		panic("h2: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 {
		return // informational answers are not forwarded
	}
	rw.wroteHeader, rw.status = true, code
}

func (rw *responseWriter) bodyAllowed() bool {
	return rw.status != http.StatusNoContent && rw.status != http.StatusNotModified && rw.st.req.Method != http.MethodHead
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if rw.done {
		return 0, errors.New("h2: write after handler returned")
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if !rw.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	rw.buf = append(rw.buf, p...)
	if len(rw.buf) >= flushAt {
		if err := rw.FlushError(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush sends what has been written.
func (rw *responseWriter) Flush() { _ = rw.FlushError() }

// FlushError sends what has been written (http.ResponseController).
func (rw *responseWriter) FlushError() error {
	if rw.done {
		return nil
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	c := rw.st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := rw.sendLocked(false); err != nil {
		return err
	}
	return c.w.flushLocked()
}

// finish ends the response after the handler returned.
func (rw *responseWriter) finish() {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	st := rw.st
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = rw.sendLocked(true)
	rw.done = true
	if !st.localDone && !st.remoteDone {
		// The answer is complete before the request: the rest of it is
		// not wanted (RFC 9113 §8.1).
		c.w.buf = appendRST(c.w.buf, st.id, http2.ErrCodeNo)
		st.resetErr = errors.New("h2: response complete")
	}
	st.localDone = true
	c.closeStreamLocked(st)
	c.w.flushLater()
}

// trailerNames lists the response's trailers: the keys with
// http.TrailerPrefix and those declared in a Trailer header.
func (rw *responseWriter) declared(k string) bool {
	for _, v := range rw.hdr["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			if http.CanonicalHeaderKey(strings.TrimSpace(name)) == k {
				return true
			}
		}
	}
	return false
}

func (rw *responseWriter) hasTrailers() bool {
	if len(rw.flatTrailers) > 0 {
		return true
	}
	for k := range rw.hdr {
		if strings.HasPrefix(k, http.TrailerPrefix) || (k != "Trailer" && rw.declared(k)) {
			return true
		}
	}
	return false
}

// sendLocked queues the headers if not yet sent and the held body, within
// the peer's flow-control windows; with end, the trailers or END_STREAM.
func (rw *responseWriter) sendLocked(end bool) error {
	st := rw.st
	c := st.c
	if st.localDone || c.closed {
		if st.resetErr != nil {
			return st.resetErr
		}
		return errClosed
	}
	trailers := end && rw.hasTrailers()
	ended := false
	if !rw.sentHeader {
		rw.sentHeader = true
		ended = end && len(rw.buf) == 0 && !trailers
		c.w.buf = appendHeaders(c.w.buf, st.id, rw.encodeHeaders(end && !trailers), ended, c.peerFrame)
	}
	p := rw.buf
	for !ended {
		if len(p) == 0 {
			if end && !trailers {
				c.w.buf = appendData(c.w.buf, st.id, nil, true)
			}
			break
		}
		n := int64(min(len(p), c.peerFrame))
		n = min(n, st.sendWindow, c.sendWindow)
		if n <= 0 {
			// Let the peer see what is queued, then wait for window.
			_ = c.w.flushLocked()
			for (st.sendWindow <= 0 || c.sendWindow <= 0) && !st.localDone && !c.closed {
				c.flow.Wait()
			}
			if st.localDone || c.closed {
				return errClosed
			}
			continue
		}
		if room := c.w.roomLocked(int(n)); room == 0 {
			// The connection holds its limit unsent: wait, as long as
			// the stream lives, for the peer to take some.
			if err := c.w.waitRoomLocked(int(n), func() bool { return st.localDone || c.closed }); err != nil {
				return err
			}
			if st.localDone || c.closed {
				return errClosed
			}
			continue
		} else {
			n = int64(room)
		}
		last := end && !trailers && int(n) == len(p)
		c.w.buf = appendData(c.w.buf, st.id, p[:n], last)
		st.sendWindow -= n
		c.sendWindow -= n
		p = p[n:]
		ended = last
	}
	if rw.borrowed {
		rw.buf, rw.borrowed = nil, false
	} else {
		rw.buf = rw.buf[:0]
	}
	if trailers {
		c.hbuf.Reset()
		for k, vs := range rw.hdr {
			name, ok := strings.CutPrefix(k, http.TrailerPrefix)
			if !ok && (k == "Trailer" || !rw.declared(k)) {
				continue
			}
			rw.writeFields(c.lowerName(name), vs)
		}
		for _, kv := range rw.flatTrailers {
			rw.writeField(kv[0], kv[1])
		}
		c.w.buf = appendHeaders(c.w.buf, st.id, c.hbuf.Bytes(), true, c.peerFrame)
	}
	return nil
}

func (rw *responseWriter) writeFields(name string, vs []string) {
	for _, v := range vs {
		rw.writeField(name, v)
	}
}

func (rw *responseWriter) writeField(name, v string) {
	if connectionSpecific(name) || !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(v) {
		return
	}
	_ = rw.st.c.henc.WriteField(hpack.HeaderField{Name: name, Value: v})
}

// encodeHeaders encodes the response headers as Go's server writes them:
// a Date, a sniffed Content-Type and, for a whole body, its length.
func (rw *responseWriter) encodeHeaders(whole bool) []byte {
	c := rw.st.c
	c.hbuf.Reset()
	status := "200"
	if rw.status != http.StatusOK {
		status = strconv.Itoa(rw.status)
	}
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: status})
	var hasType, hasLength, hasDate bool
	note := func(name string) {
		switch name {
		case "content-type":
			hasType = true
		case "content-length":
			hasLength = true
		case "date":
			hasDate = true
		}
	}
	for k, vs := range rw.hdr {
		if k == "Trailer" || strings.HasPrefix(k, http.TrailerPrefix) || rw.declared(k) {
			continue
		}
		name := c.lowerName(k)
		note(name)
		rw.writeFields(name, vs)
	}
	for _, kv := range rw.flat {
		note(kv[0])
		rw.writeField(kv[0], kv[1])
	}
	if !hasType && rw.bodyAllowed() && len(rw.buf) > 0 {
		_ = c.henc.WriteField(hpack.HeaderField{Name: "content-type", Value: http.DetectContentType(rw.buf)})
	}
	if !hasLength && whole && rw.bodyAllowed() {
		_ = c.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(rw.buf))})
	}
	if !hasDate {
		_ = c.henc.WriteField(hpack.HeaderField{Name: "date", Value: c.srv.httpDate()})
	}
	return c.hbuf.Bytes()
}
