package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// serve runs a Mux with h (HTTP/1.1 and h2c) on a loopback port.
func serve(t *testing.T, h http.Handler, cfg ServerConfig) (string, *Mux) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Handler = h
	m := &Mux{HTTP1: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, H2: NewServer(cfg)}
	go func() { _ = m.Serve(ln) }()
	t.Cleanup(func() { _ = m.Close() })
	return ln.Addr().String(), m
}

// peer is a raw HTTP/2 client speaking frames.
type peer struct {
	t    *testing.T
	nc   net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
}

func dialPeer(t *testing.T, addr string, settings ...http2.Setting) *peer {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	p := &peer{t: t, nc: nc, fr: http2.NewFramer(nc, nc)}
	p.fr.AllowIllegalWrites = true
	p.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	p.enc = hpack.NewEncoder(&p.hbuf)
	if _, err := io.WriteString(nc, ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := p.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return p
}

// next reads the next frame that is not one of skip, within 5 s.
func (p *peer) next(skip ...http2.FrameType) http2.Frame {
	p.t.Helper()
	_ = p.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			p.t.Fatalf("read frame: %v", err)
		}
		skipped := false
		for _, s := range skip {
			skipped = skipped || f.Header().Type == s
		}
		if !skipped {
			return f
		}
	}
}

// until reads frames until one satisfies ok, within 5 s.
func (p *peer) until(ok func(http2.Frame) bool) http2.Frame {
	p.t.Helper()
	for range 1000 {
		if f := p.next(); ok(f) {
			return f
		}
	}
	p.t.Fatal("no such frame in 1000")
	return nil
}

func (p *peer) headers(stream uint32, end bool, fields ...string) {
	p.t.Helper()
	p.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		_ = p.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: p.hbuf.Bytes(), EndStream: end, EndHeaders: true}); err != nil {
		p.t.Fatal(err)
	}
}

func get(path string) []string {
	return []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", path}
}

func post(path string) []string {
	return []string{":method", "POST", ":scheme", "http", ":authority", "x", ":path", path, "content-type", "application/grpc", "te", "trailers"}
}

func echo(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	w.Header().Set("content-type", "application/grpc")
	w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	for k, v := range r.Trailer {
		w.Header()[http.TrailerPrefix+"Echo-"+k] = v
	}
	_, _ = w.Write(b)
}

// countingConn counts the writes made to a connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// TestServerUnaryOneWrite checks a unary answer (headers, data, trailers)
// is well formed and leaves in one write, and that the server
// acknowledges SETTINGS and answers PING.
func TestServerUnaryOneWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := NewServer(ServerConfig{Handler: http.HandlerFunc(echo)})
	defer srv.Close()
	conns := make(chan *countingConn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		if _, err := io.ReadFull(nc, make([]byte, len(ClientPreface))); err != nil {
			return
		}
		cc := &countingConn{Conn: nc}
		conns <- cc
		srv.ServeConn(cc)
	}()
	p := dialPeer(t, ln.Addr().String())
	cc := <-conns
	if err := p.fr.WritePing(false, [8]byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	p.until(func(f http2.Frame) bool { s, ok := f.(*http2.SettingsFrame); return ok && s.IsAck() })
	ping := p.until(func(f http2.Frame) bool { _, ok := f.(*http2.PingFrame); return ok }).(*http2.PingFrame)
	if !ping.IsAck() || ping.Data != [8]byte{1, 2, 3} {
		t.Fatalf("ping answer %+v", ping)
	}
	before := cc.writes.Load()
	p.headers(1, false, post("/echo")...)
	if err := p.fr.WriteData(1, true, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	h := p.next(http2.FrameWindowUpdate, http2.FrameSettings).(*http2.MetaHeadersFrame)
	if h.PseudoValue("status") != "200" || h.StreamEnded() {
		t.Fatalf("headers %v", h.Fields)
	}
	d := p.next().(*http2.DataFrame)
	if string(d.Data()) != "hello" || d.StreamEnded() {
		t.Fatalf("data %q end=%v", d.Data(), d.StreamEnded())
	}
	tr := p.next().(*http2.MetaHeadersFrame)
	if !tr.StreamEnded() || len(tr.Fields) != 1 || tr.Fields[0].Name != "grpc-status" {
		t.Fatalf("trailers %v end=%v", tr.Fields, tr.StreamEnded())
	}
	if n := cc.writes.Load() - before; n != 1 {
		t.Fatalf("the answer took %d writes, want 1", n)
	}
}

// TestServerFlowControl makes the client's windows tiny: the response
// must come in pieces as WINDOW_UPDATEs open the windows, never past them.
func TestServerFlowControl(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 100)
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }), ServerConfig{})
	p := dialPeer(t, addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
	p.headers(1, true, get("/")...)
	var got []byte
	for {
		f := p.next(http2.FrameSettings, http2.FrameWindowUpdate)
		if _, ok := f.(*http2.MetaHeadersFrame); ok {
			continue
		}
		d := f.(*http2.DataFrame)
		if len(d.Data()) > 10 {
			t.Fatalf("DATA of %d bytes past a 10-byte window", len(d.Data()))
		}
		got = append(got, d.Data()...)
		if d.StreamEnded() {
			break
		}
		if len(d.Data()) > 0 {
			if err := p.fr.WriteWindowUpdate(1, uint32(len(d.Data()))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("got %d bytes, want %d", len(got), len(body))
	}
}

// TestServerRequestWindowBoundsBody checks the stream window is the
// per-stream buffer limit: a client that sends past it gets the stream
// reset with FLOW_CONTROL_ERROR.
func TestServerRequestWindowBoundsBody(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	addr, _ := serve(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }), ServerConfig{StreamWindow: 1000})
	p := dialPeer(t, addr)
	p.headers(1, false, post("/")...)
	for range 3 {
		if err := p.fr.WriteData(1, false, make([]byte, 500)); err != nil {
			t.Fatal(err)
		}
	}
	rst := p.until(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
	if rst.StreamID != 1 || rst.ErrCode != http2.ErrCodeFlowControl {
		t.Fatalf("got %v on stream %d, want FLOW_CONTROL_ERROR on 1", rst.ErrCode, rst.StreamID)
	}
}

// TestServerContinuationAndHeaderLimit sends a header block split over
// CONTINUATION frames (served) and one past the header list limit (431).
func TestServerContinuationAndHeaderLimit(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-got", r.Header.Get("X-Big"))
	}), ServerConfig{MaxHeaderListSize: 4096})
	p := dialPeer(t, addr)
	p.hbuf.Reset()
	for i := 0; i+1 < len(get("/")); i += 2 {
		_ = p.enc.WriteField(hpack.HeaderField{Name: get("/")[i], Value: get("/")[i+1]})
	}
	_ = p.enc.WriteField(hpack.HeaderField{Name: "x-big", Value: strings.Repeat("v", 100)})
	block := p.hbuf.Bytes()
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:10], EndStream: true}); err != nil {
		t.Fatal(err)
	}
	if err := p.fr.WriteContinuation(1, true, block[10:]); err != nil {
		t.Fatal(err)
	}
	h := p.until(func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
	var got string
	for _, hf := range h.Fields {
		if hf.Name == "x-got" {
			got = hf.Value
		}
	}
	if got != strings.Repeat("v", 100) {
		t.Fatalf("x-got = %q", got)
	}
	big := get("/")
	for i := range 10 {
		big = append(big, "x-big-"+strconv.Itoa(i), strings.Repeat("v", 500))
	}
	p.headers(3, true, big...)
	h = p.until(func(f http2.Frame) bool { m, ok := f.(*http2.MetaHeadersFrame); return ok && m.StreamID == 3 }).(*http2.MetaHeadersFrame)
	if h.PseudoValue("status") != "431" {
		t.Fatalf("status %q, want 431", h.PseudoValue("status"))
	}
}

// TestServerMalformed sends protocol violations: each ends as RFC 9113
// says, a stream error with RST_STREAM, a connection error with GOAWAY.
func TestServerMalformed(t *testing.T) {
	cases := []struct {
		name   string
		send   func(p *peer)
		stream bool
		code   http2.ErrCode
	}{
		{"DATA on stream 0", func(p *peer) { _ = p.fr.WriteData(0, false, []byte("x")) }, false, http2.ErrCodeProtocol},
		{"DATA on an idle stream", func(p *peer) { _ = p.fr.WriteData(5, false, []byte("x")) }, false, http2.ErrCodeProtocol},
		{"even stream", func(p *peer) { p.headers(2, true, get("/")...) }, false, http2.ErrCodeProtocol},
		{"zero connection WINDOW_UPDATE", func(p *peer) { _ = p.fr.WriteWindowUpdate(0, 0) }, false, http2.ErrCodeProtocol},
		{"window overflow", func(p *peer) { _ = p.fr.WriteWindowUpdate(0, 1<<31-1) }, false, http2.ErrCodeFlowControl},
		{"frame too large", func(p *peer) {
			p.headers(1, false, post("/")...)
			_ = p.fr.WriteData(1, false, make([]byte, 20000))
		}, false, http2.ErrCodeFrameSize},
		{"CONTINUATION without HEADERS", func(p *peer) { _ = p.fr.WriteContinuation(1, true, []byte{0x82}) }, false, http2.ErrCodeProtocol},
		{"bad HPACK", func(p *peer) {
			_ = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff}, EndHeaders: true})
		}, false, http2.ErrCodeCompression},
		{"connection header", func(p *peer) { p.headers(1, true, append(get("/"), "connection", "close")...) }, true, http2.ErrCodeProtocol},
		{"missing :path", func(p *peer) { p.headers(1, true, ":method", "GET", ":scheme", "http") }, true, http2.ErrCodeProtocol},
		{"content-length mismatch", func(p *peer) {
			p.headers(1, false, append(post("/"), "content-length", "3")...)
			_ = p.fr.WriteData(1, true, []byte("x"))
		}, true, http2.ErrCodeProtocol},
	}
	addr, _ := serve(t, http.HandlerFunc(echo), ServerConfig{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := dialPeer(t, addr)
			tc.send(p)
			f := p.until(func(f http2.Frame) bool {
				switch f.(type) {
				case *http2.RSTStreamFrame, *http2.GoAwayFrame:
					return true
				}
				return false
			})
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				if !tc.stream || f.ErrCode != tc.code {
					t.Fatalf("RST_STREAM %v, want stream=%v %v", f.ErrCode, tc.stream, tc.code)
				}
			case *http2.GoAwayFrame:
				if tc.stream || f.ErrCode != tc.code {
					t.Fatalf("GOAWAY %v, want stream=%v %v", f.ErrCode, tc.stream, tc.code)
				}
			}
		})
	}
}

// TestServerConcurrencyLimit refuses the stream past
// MAX_CONCURRENT_STREAMS with REFUSED_STREAM, which clients retry.
func TestServerConcurrencyLimit(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	addr, _ := serve(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }), ServerConfig{MaxConcurrentStreams: 2})
	p := dialPeer(t, addr)
	for _, id := range []uint32{1, 3, 5} {
		p.headers(id, true, get("/")...)
	}
	rst := p.until(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
	if rst.StreamID != 5 || rst.ErrCode != http2.ErrCodeRefusedStream {
		t.Fatalf("RST_STREAM %v on %d, want REFUSED_STREAM on 5", rst.ErrCode, rst.StreamID)
	}
}

// TestServerResetCancelsHandler checks a client's RST_STREAM ends the
// handler's context.
func TestServerResetCancelsHandler(t *testing.T) {
	// A stream's context is not a child of its connection's: both the
	// stream's reset and the connection's end must cancel it.
	for _, tc := range []struct {
		name string
		end  func(p *peer) error
	}{
		{"RST_STREAM", func(p *peer) error { return p.fr.WriteRSTStream(1, http2.ErrCodeCancel) }},
		{"connection closed", func(p *peer) error { return p.nc.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cancelled := make(chan error, 1)
			started := make(chan struct{})
			addr, _ := serve(t, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				close(started)
				<-r.Context().Done()
				cancelled <- r.Context().Err()
			}), ServerConfig{})
			p := dialPeer(t, addr)
			p.headers(1, true, get("/")...)
			select {
			case <-started:
			case <-time.After(5 * time.Second):
				t.Fatal("handler never started")
			}
			if err := tc.end(p); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-cancelled:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("context error %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("handler's context not cancelled by %s", tc.name)
			}
		})
	}
}

// TestServerShutdownFinishesStreams checks a graceful shutdown: GOAWAY
// naming the last stream, the stream in flight answered, then the
// connection closed.
func TestServerShutdownFinishesStreams(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	addr, m := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		_, _ = w.Write([]byte("done"))
	}), ServerConfig{})
	p := dialPeer(t, addr)
	p.headers(1, true, get("/")...)
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- m.Shutdown(ctx)
	}()
	ga := p.until(func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 1 {
		t.Fatalf("GOAWAY %v last %d, want NO_ERROR last 1", ga.ErrCode, ga.LastStreamID)
	}
	close(release)
	d := p.until(func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame)
	if string(d.Data()) != "done" || !d.StreamEnded() {
		t.Fatalf("data %q", d.Data())
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	_ = p.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := p.fr.ReadFrame(); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			t.Fatalf("connection not closed after its last stream: %v", err)
		}
	}
}

// TestMuxHTTP1OnSamePort serves HTTP/1.1 on the h2c port.
func TestMuxHTTP1OnSamePort(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) }), ServerConfig{})
	res, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if string(b) != "HTTP/1.1" {
		t.Fatalf("got %q", b)
	}
}

// TestServerHandlerPanicResetsStream checks a handler's panic resets its
// stream with INTERNAL_ERROR and the connection serves on.
func TestServerHandlerPanicResetsStream(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic(http.ErrAbortHandler)
		}
	}), ServerConfig{})
	p := dialPeer(t, addr)
	p.headers(1, true, get("/panic")...)
	rst := p.until(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
	if rst.ErrCode != http2.ErrCodeInternal {
		t.Fatalf("RST_STREAM %v", rst.ErrCode)
	}
	p.headers(3, true, get("/ok")...)
	h := p.until(func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
	if h.StreamID != 3 || h.PseudoValue("status") != "200" {
		t.Fatalf("stream %d status %q", h.StreamID, h.PseudoValue("status"))
	}
}

// TestServerIgnoresFramesOnAClosedStream answers before the request ends
// (as a 413 does): the rest of the body and the trailers that were on
// their way are ignored, and the connection serves on.
func TestServerIgnoresFramesOnAClosedStream(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	}), ServerConfig{})
	p := dialPeer(t, addr)
	p.headers(1, false, post("/")...)
	rst := p.until(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
	if rst.StreamID != 1 || rst.ErrCode != http2.ErrCodeNo {
		t.Fatalf("RST_STREAM %v on %d, want NO_ERROR on 1", rst.ErrCode, rst.StreamID)
	}
	if err := p.fr.WriteData(1, false, []byte("late body")); err != nil {
		t.Fatal(err)
	}
	p.headers(1, true, "grpc-status", "0")
	p.headers(3, true, get("/")...)
	f := p.until(func(f http2.Frame) bool {
		switch f.(type) {
		case *http2.MetaHeadersFrame, *http2.GoAwayFrame, *http2.RSTStreamFrame:
			return true
		}
		return false
	})
	h, ok := f.(*http2.MetaHeadersFrame)
	if !ok || h.StreamID != 3 || h.PseudoValue("status") != "413" {
		t.Fatalf("got %v, want stream 3's 413 answer", f)
	}
}
