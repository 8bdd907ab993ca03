package h2

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// unsent is what a connection holds for its peer: the queue and the
// write under way, at the most it has been.
func unsent(mu *sync.Mutex, w *writer) int {
	mu.Lock()
	defer mu.Unlock()
	return max(w.peak, len(w.buf)+w.inflight)
}

// waitGoroutines waits, bounded, for the goroutine count to come back to
// base (the server's idle workers leave after workerIdle).
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(4*workerIdle + 10*time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not synchronising
	}
}

// serverConnFrom finds the server's connection from the client address.
func serverConnFrom(t *testing.T, s *Server, client net.Addr) *serverConn {
	t.Helper()
	for range 500 {
		s.mu.Lock()
		for c := range s.conns {
			if c.remote == client.String() {
				s.mu.Unlock()
				return c
			}
		}
		s.mu.Unlock()
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising
	}
	t.Fatal("the server has no connection from", client)
	return nil
}

// TestServerPeerThatStopsReading opens a connection with the largest
// windows, asks for far more than the socket buffers hold and never reads:
// the server holds at most its buffer limit for it, closes it once a write
// has waited past the write timeout, and serves another client throughout.
func TestServerPeerThatStopsReading(t *testing.T) {
	base := runtime.NumGoroutine()
	const (
		limit   = 256 << 10
		timeout = 500 * time.Millisecond
		streams = 32
		answer  = 4 << 20 // 128 MiB asked for in all
	)
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/small" {
			_, _ = w.Write([]byte("ok"))
			return
		}
		for sent := 0; sent < answer; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	addr, m := serve(t, h, ServerConfig{ConnBufferLimit: limit, WriteTimeout: timeout})

	bad := dialPeer(t, addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow})
	if err := bad.fr.WriteWindowUpdate(0, maxWindow-defaultWindow); err != nil {
		t.Fatal(err)
	}
	c := serverConnFrom(t, m.H2, bad.nc.LocalAddr())
	start := time.Now()
	for i := range streams {
		bad.headers(uint32(2*i+1), true, get("/big")...)
	}

	// A well-behaved client, served while the other stalls.
	tr := newTransport()
	var served, failed atomic.Int64
	stop := make(chan struct{})
	good := make(chan struct{})
	go func() {
		defer close(good)
		for {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/small", nil)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				b, rerr := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if rerr != nil || string(b) != "ok" {
					err = rerr
				}
			}
			cancel()
			if err != nil {
				failed.Add(1)
				t.Errorf("well-behaved client: %v", err)
				return
			}
			served.Add(1)
		}
	}()

	peak := 0
	select {
	case <-c.done:
	case <-time.After(20 * timeout):
		peak = unsent(&c.mu, c.w)
		t.Errorf("the stalled connection is still open after %v (%d bytes queued)", 20*timeout, peak)
		_ = c.nc.Close()
		<-c.done
	}
	closedAfter := time.Since(start)
	peak = max(peak, unsent(&c.mu, c.w))
	// The bound is the limit plus what is not DATA: the HEADERS of the
	// answers and the frame that crossed the limit's last byte.
	if slack := defaultFrameSize + 4<<10; peak > limit+slack {
		t.Errorf("the stalled connection held %d bytes unsent, limit %d", peak, limit)
	}
	if closedAfter < timeout {
		t.Errorf("closed after %v, before the write timeout %v", closedAfter, timeout)
	}
	// The well-behaved client is still served after the close.
	before := served.Load()
	for i := 0; served.Load() < before+5 && failed.Load() == 0; i++ {
		if i > 500 {
			t.Fatalf("the well-behaved client made no progress: %d served", served.Load())
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising
	}
	close(stop)
	<-good
	t.Logf("closed after %v; peak unsent %d bytes; %d requests served meanwhile", closedAfter, peak, served.Load())
	tr.CloseIdleConnections()
	_ = bad.nc.Close()
	_ = m.Close()
	waitGoroutines(t, base)
}

// stalledUpstream is an h2c server that grants the largest windows and
// never reads a byte; stop closes it and its connections.
func stalledUpstream(t *testing.T) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			var b []byte
			b = appendSettings(b, http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow})
			b = appendWindowUpdate(b, 0, maxWindow-defaultWindow)
			_, _ = nc.Write(b)
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = ln.Close()
			<-done
			mu.Lock()
			defer mu.Unlock()
			for _, nc := range conns {
				_ = nc.Close()
			}
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// TestClientUpstreamThatStopsReading sends large bodies to an upstream
// that never reads: the transport holds at most its buffer limit, closes
// the connection after the write timeout and every request fails with an
// error instead of hanging.
func TestClientUpstreamThatStopsReading(t *testing.T) {
	base := runtime.NumGoroutine()
	const (
		limit    = 256 << 10
		timeout  = 500 * time.Millisecond
		requests = 8
		size     = 4 << 20
	)
	addr, stopUpstream := stalledUpstream(t)
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &Transport{DialContext: d.DialContext, ConnBufferLimit: limit, WriteTimeout: timeout}
	body := bytes.Repeat([]byte("y"), size)
	errs := make(chan error, requests)
	start := time.Now()
	for i := range requests {
		go func() {
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/r"+strconv.Itoa(i), bytes.NewReader(body))
			resp, err := tr.RoundTrip(req)
			if err == nil {
				_ = resp.Body.Close()
			}
			errs <- err
		}()
	}
	var cc *clientConn
	for i := 0; cc == nil; i++ {
		if i > 500 {
			t.Fatal("no upstream connection")
		}
		tr.mu.Lock()
		if cs := tr.conns[addr]; len(cs) > 0 {
			cc = cs[0]
		}
		tr.mu.Unlock()
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising
	}
	peak := 0
	for range requests {
		select {
		case err := <-errs:
			if err == nil {
				t.Error("a request to a stalled upstream succeeded")
			}
		case <-time.After(20 * timeout):
			peak = unsent(&cc.mu, cc.w)
			t.Fatalf("a request to a stalled upstream still waits after %v (%d bytes queued)", 20*timeout, peak)
		}
	}
	failedAfter := time.Since(start)
	peak = max(peak, unsent(&cc.mu, cc.w))
	if slack := defaultFrameSize + 4<<10; peak > limit+slack {
		t.Errorf("the stalled connection held %d bytes unsent, limit %d", peak, limit)
	}
	if failedAfter < timeout {
		t.Errorf("failed after %v, before the write timeout %v", failedAfter, timeout)
	}
	t.Logf("failed after %v; peak unsent %d bytes", failedAfter, peak)
	stopUpstream()
	tr.CloseIdleConnections()
	waitGoroutines(t, base)
}

// TestWriterRoom checks what DATA the buffer limit lets through.
func TestWriterRoom(t *testing.T) {
	cases := []struct {
		name          string
		limit, queued int
		want, got     int
	}{
		{"empty, a frame", 1 << 20, 0, 16384, 16384},
		{"near the limit, what is left", 1 << 20, 1<<20 - 8192, 16384, 8192},
		{"too little left for a useful frame", 1 << 20, 1<<20 - 100, 16384, 0},
		{"a small last piece still fits", 1 << 20, 1<<20 - 100, 50, 50},
		{"full", 1 << 20, 1 << 20, 16384, 0},
		{"a limit under a frame still passes a frame", 1, 0, 16384, 16384},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			room := sync.NewCond(&mu)
			w := newWriter(nil, &mu, room, writeLimits{buffer: tc.limit, timeout: time.Second})
			w.buf = make([]byte, tc.queued)
			if got := w.roomLocked(tc.want); got != tc.got {
				t.Fatalf("room for %d with %d of %d queued: %d, want %d", tc.want, tc.queued, tc.limit, got, tc.got)
			}
		})
	}
}

// smallBufListener shrinks each accepted connection's send buffer, so
// that a slow reader is felt at once rather than after megabytes of
// loopback buffering.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(16 << 10)
	}
	return nc, err
}

// TestServerSlowReaderIsNotCut reads answers far larger than the socket
// buffers slowly but steadily: the batches of the concurrent streams take
// the peer longer than the write timeout each, but it keeps taking
// pieces, so the connection stays and every answer arrives whole.
func TestServerSlowReaderIsNotCut(t *testing.T) {
	const (
		timeout = 300 * time.Millisecond
		streams = 8
		answer  = 256 << 10 // 2 MiB in all
	)
	chunk := bytes.Repeat([]byte("z"), 64<<10)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for sent := 0; sent < answer; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &Mux{H2: NewServer(ServerConfig{Handler: h, WriteTimeout: timeout})}
	go func() { _ = m.Serve(smallBufListener{ln}) }()
	t.Cleanup(func() { _ = m.Close() })

	p := dialPeer(t, ln.Addr().String(), http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow})
	if err := p.nc.(*net.TCPConn).SetReadBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	if err := p.fr.WriteWindowUpdate(0, maxWindow-defaultWindow); err != nil {
		t.Fatal(err)
	}
	for i := range streams {
		p.headers(uint32(2*i+1), true, get("/slow")...)
	}
	// About 16 KiB every 10 ms (1.6 MB/s): a batch near the 1 MiB limit
	// takes the peer over 600 ms, twice the write timeout.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	got, ended := 0, 0
	start := time.Now()
	for ended < streams {
		switch f := p.next().(type) {
		case *http2.DataFrame:
			got += len(f.Data())
			if f.StreamEnded() {
				ended++
			}
			<-tick.C
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY after %d bytes", got)
		}
	}
	if got != streams*answer {
		t.Fatalf("%d bytes, want %d", got, streams*answer)
	}
	t.Logf("%d bytes read in %v", got, time.Since(start))
}
