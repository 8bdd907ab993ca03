package h2

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// held is a handler that answers each request when the test lets it.
type held struct {
	entered chan string
	release chan struct{}
}

func (h *held) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.entered <- r.URL.Path
	select {
	case <-h.release:
	case <-r.Context().Done():
		return
	}
	_, _ = w.Write([]byte("ok"))
}

// waitFor polls cond, bounded, failing with what.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i > 1000 {
			t.Fatal("gave up waiting: ", what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not synchronising
	}
}

// TestTransportMaxConns checks the cluster-wide connection limit: with
// servers that take one stream per connection, the third concurrent
// request to a host waits for a stream to end instead of opening a third
// connection, a waiting request gives up with its context, and another
// host with no connection still gets one (Envoy's rule).
func TestTransportMaxConns(t *testing.T) {
	h := &held{entered: make(chan string, 16), release: make(chan struct{})}
	addrA, mA := serve(t, h, ServerConfig{MaxConcurrentStreams: 1})
	addrB, mB := serve(t, h, ServerConfig{MaxConcurrentStreams: 1})
	var overflows atomic.Int64
	tr := newTransport()
	tr.MaxConns = 2
	tr.OnConnOverflow = func() { overflows.Add(1) }
	defer tr.CloseIdleConnections()

	type result struct {
		body string
		err  error
	}
	do := func(ctx context.Context, addr, path string) chan result {
		out := make(chan result, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				out <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			out <- result{string(b), err}
		}()
		return out
	}
	serverConns := func(m *Mux) int {
		m.H2.mu.Lock()
		defer m.H2.mu.Unlock()
		return len(m.H2.conns)
	}
	// settled waits until every connection to addr knows the server's
	// one-stream limit, so that no request is sent past it.
	settled := func(addr string) {
		waitFor(t, "the server's SETTINGS", func() bool {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			for _, cc := range tr.conns[addr] {
				cc.mu.Lock()
				ok := cc.maxStreams == 1
				cc.mu.Unlock()
				if !ok {
					return false
				}
			}
			return true
		})
	}
	ctx := context.Background()
	r1 := do(ctx, addrA, "/1")
	<-h.entered
	settled(addrA)
	r2 := do(ctx, addrA, "/2")
	<-h.entered
	settled(addrA)
	r3 := do(ctx, addrA, "/3")
	waitFor(t, "the third request to wait", func() bool { return tr.waiting.Load() == 1 })
	if n := serverConns(mA); n != 2 {
		t.Fatalf("%d connections to A, limit 2", n)
	}
	// A request whose context ends while it waits fails with it.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if r := <-do(short, addrA, "/4"); !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("a waiting request past its deadline: %v", r.err)
	}
	// B has no connection: it gets one although the limit is reached.
	rB := do(ctx, addrB, "/b")
	if p := <-h.entered; p != "/b" {
		t.Fatalf("%s entered, want /b", p)
	}
	if n := serverConns(mA); n != 2 {
		t.Fatalf("%d connections to A, limit 2", n)
	}
	// One stream ends: the waiting request takes its place.
	h.release <- struct{}{}
	if p := <-h.entered; p != "/3" {
		t.Fatalf("%s entered, want /3", p)
	}
	close(h.release)
	for _, r := range []chan result{r1, r2, r3, rB} {
		if got := <-r; got.err != nil || got.body != "ok" {
			t.Fatalf("answer %q, %v", got.body, got.err)
		}
	}
	if n := serverConns(mA); n != 2 {
		t.Fatalf("%d connections to A, limit 2", n)
	}
	if serverConns(mB) != 1 || overflows.Load() < 2 {
		t.Fatalf("%d connections to B, %d overflows", serverConns(mB), overflows.Load())
	}
}

// TestTransportMaxConnsSlotFreedByADeadConnection checks that a
// connection the server closes at once gives its MaxConns slot back, even
// when it fails before the dial has listed it: requests keep failing fast
// instead of waiting for a slot nobody holds.
func TestTransportMaxConnsSlotFreedByADeadConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			_ = nc.Close()
		}
	}()
	tr := newTransport()
	tr.MaxConns = 1
	for i := range 200 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
		resp, err := tr.RoundTrip(req)
		cancel()
		if err == nil {
			_ = resp.Body.Close()
			t.Fatal("a server that closes every connection answered")
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("request %d waited for a connection slot until its deadline", i)
		}
	}
	waitFor(t, "every slot back", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.total == 0
	})
}
