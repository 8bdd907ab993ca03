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
	"testing"
	"time"
)

// goServer is Go's own h2c server, the reference peer for the client.
func goServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func newTransport() *Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &Transport{DialContext: d.DialContext}
}

func TestClientAgainstGoServer(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 1<<20) // 10 MiB: past every window
	addr := goServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		switch r.URL.Path {
		case "/big":
			_, _ = w.Write(big)
		default:
			w.Header().Set("content-type", "application/grpc")
			w.Header().Set("x-req-len", strconv.Itoa(len(body)))
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
			w.Header().Set(http.TrailerPrefix+"X-Req-Trailer", r.Trailer.Get("X-T"))
			_, _ = w.Write(body)
		}
	})
	tr := newTransport()
	defer tr.CloseIdleConnections()
	cases := []struct {
		name     string
		body     func() io.Reader
		length   int64
		path     string
		trailer  string
		wantBody []byte
	}{
		{"unary", func() io.Reader { return bytes.NewReader([]byte("hello")) }, 5, "/echo", "", []byte("hello")},
		{"no body", func() io.Reader { return nil }, 0, "/echo", "", nil},
		{"body past the windows", func() io.Reader { return bytes.NewReader(big[:3<<20]) }, 3 << 20, "/echo", "", big[:3<<20]},
		{"streamed body with trailers", func() io.Reader { return io.MultiReader(strings.NewReader("ab"), strings.NewReader("cd")) }, -1, "/echo", "tv", []byte("abcd")},
		{"response past the windows", func() io.Reader { return nil }, 0, "/big", "", big},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+tc.path, tc.body())
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = tc.length
			if tc.trailer != "" {
				req.Trailer = http.Header{"X-T": {tc.trailer}}
			}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.wantBody) {
				t.Fatalf("body: %d bytes, want %d", len(got), len(tc.wantBody))
			}
			if tc.path == "/echo" {
				if resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("X-Req-Trailer") != tc.trailer {
					t.Fatalf("trailers %v", resp.Trailer)
				}
			}
		})
	}
}

// TestClientCancel checks a request's context ends the wait for headers
// and resets the stream, so the server's handler sees its context end.
func TestClientCancel(t *testing.T) {
	seen := make(chan struct{})
	started := make(chan struct{})
	addr := goServer(t, func(_ http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		close(seen)
	})
	tr := newTransport()
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		_, err := tr.RoundTrip(req)
		errc <- err
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("request never reached the server")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("RoundTrip error %v, want context.Canceled", err)
	}
	select {
	case <-seen:
	case <-time.After(5 * time.Second):
		t.Fatal("server's handler not cancelled: no RST_STREAM")
	}
}

// TestClientRedialsAfterServerGoesAway checks a closed connection fails
// its stream and the next request dials again.
func TestClientRedialsAfterServerGoesAway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	srv := NewServer(ServerConfig{Handler: h})
	m := &Mux{H2: srv}
	go func() { _ = m.Serve(ln) }()
	defer m.Close()
	tr := newTransport()
	defer tr.CloseIdleConnections()
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	// Drop every server connection; the pool must notice and redial.
	srv.mu.Lock()
	for c := range srv.conns {
		_ = c.nc.Close()
	}
	srv.mu.Unlock()
	var last error
	for range 50 {
		if last = call(); last == nil {
			return
		}
	}
	t.Fatalf("no request succeeded after the connection dropped: %v", last)
}

// TestProxyStreamsPastTheWindows chains Go's h2c client, this package's
// server, a proxying handler using this package's client, and Go's h2c
// server: a 3 MiB body of unknown length and its 3 MiB answer stream both
// ways through 1 MiB stream windows, the answer flushed as it comes.
func TestProxyStreamsPastTheWindows(t *testing.T) {
	backend := goServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-backend", "yes")
		_, _ = io.Copy(w, r.Body)
	})
	tr := newTransport()
	defer tr.CloseIdleConnections()
	proxy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+backend+r.URL.Path, r.Body)
		if err != nil {
			t.Error(err)
			return
		}
		up.ContentLength = -1
		resp, err := tr.RoundTrip(up)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("x-backend", resp.Header.Get("X-Backend"))
		rc := http.NewResponseController(w)
		buf := make([]byte, 64<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				_, _ = w.Write(buf[:n])
				_ = rc.Flush()
			}
			if err != nil {
				return
			}
		}
	})
	addr, _ := serve(t, proxy, ServerConfig{StreamWindow: 1 << 20})
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	body := bytes.Repeat([]byte("abcdefgh"), 3<<17) // 3 MiB
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/stream", io.MultiReader(bytes.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.ProtoMajor != 2 || res.Header.Get("X-Backend") != "yes" || !bytes.Equal(got, body) {
		t.Fatalf("proto %d, x-backend %q, %d bytes back of %d", res.ProtoMajor, res.Header.Get("X-Backend"), len(got), len(body))
	}
}

// TestClientUnaryOneWrite checks a unary request's HEADERS and DATA leave
// in one write once the connection is up.
func TestClientUnaryOneWrite(t *testing.T) {
	addr := goServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(w, r.Body) })
	conns := make(chan *countingConn, 1)
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cc := &countingConn{Conn: nc}
		conns <- cc
		return cc, nil
	}}
	defer tr.CloseIdleConnections()
	call := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/", strings.NewReader("ping"))
		req.ContentLength = 4
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if b, _ := io.ReadAll(resp.Body); string(b) != "ping" {
			t.Fatalf("got %q", b)
		}
	}
	call() // the connection, its SETTINGS and their acknowledgements
	cc := <-conns
	waitSettled(t, tr)
	before := cc.writes.Load()
	call()
	if n := cc.writes.Load() - before; n != 1 {
		t.Fatalf("the request took %d writes, want 1", n)
	}
}

// waitSettled waits, bounded, until every connection of tr has taken the
// server's SETTINGS and written all it queued, the acknowledgement
// included: the flusher yields before it writes, so on a loaded machine
// the acknowledgement may leave after the first answer has come, and the
// writes counted after this are the next request's own.
func waitSettled(t *testing.T, tr *Transport) {
	t.Helper()
	settled := func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, cs := range tr.conns {
			for _, cc := range cs {
				cc.mu.Lock()
				ok := cc.sawSettings && !cc.w.writing && len(cc.w.buf) == 0
				cc.mu.Unlock()
				if !ok {
					return false
				}
			}
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for !settled() {
		if time.Now().After(deadline) {
			t.Fatal("the connection never settled")
		}
		time.Sleep(time.Millisecond) // polling a condition, not synchronising
	}
}
