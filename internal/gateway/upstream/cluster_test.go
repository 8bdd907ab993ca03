package upstream

import (
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/internal/gateway/h2"
	"github.com/maestro-ml/maestro/internal/gateway/stats"
	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

// TestH2CPoolEnforcesMaxConnections checks that an h2c cluster's
// circuit-breaker max_connections bounds its pool: against a server that
// takes one stream per connection, a cluster limited to one connection
// serves concurrent requests one after the other on that connection and
// counts upstream_cx_overflow, where it used to open one per request.
func TestH2CPoolEnforcesMaxConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	inHandler := make(chan struct{}, 8)
	release := make(chan struct{})
	srv := h2.NewServer(h2.ServerConfig{MaxConcurrentStreams: 1, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inHandler <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write([]byte("ok"))
	})})
	mux := &h2.Mux{H2: srv}
	go func() { _ = mux.Serve(countingListener{ln, &accepted}) }()
	t.Cleanup(func() { _ = mux.Close() })

	cfg := &xdsconfig.Cluster{Name: "c", HTTP2: true, ConnectTimeout: 5 * time.Second, Limits: xdsconfig.DefaultLimits}
	cfg.Limits.MaxConnections = 1
	c := newCluster(cfg, stats.New(), nil)
	defer c.stop()

	get := func(errs chan<- error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
		resp, err := c.Transport().RoundTrip(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
		}
		errs <- err
	}
	// A first request alone: its answer follows the server's SETTINGS,
	// so the pool knows the one-stream limit before the others come.
	first := make(chan error, 1)
	go get(first)
	<-inHandler
	release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	const n = 3
	errs := make(chan error, n)
	for range n {
		go get(errs)
	}
	// While one request holds the only stream, each of the others finds
	// the pool full and may not open a connection: it waits, counted as
	// an overflow once.
	select {
	case <-inHandler:
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the server")
	}
	for deadline := time.Now().Add(10 * time.Second); c.Stats.CxOverflow.Value() < n-1; {
		if time.Now().After(deadline) {
			t.Fatalf("upstream_cx_overflow %d with %d requests waiting, want %d", c.Stats.CxOverflow.Value(), n-1, n-1)
		}
		runtime.Gosched()
	}
	// Each request then reaches the handler only when the previous one is
	// answered: the server refuses a second stream on a connection.
	release <- struct{}{}
	for i := 1; i < n; i++ {
		select {
		case <-inHandler:
		case <-time.After(10 * time.Second):
			t.Fatalf("request %d never reached the server", i+1)
		}
		release <- struct{}{}
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := accepted.Load(); got != 1 {
		t.Fatalf("%d connections opened, max_connections 1", got)
	}
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return nc, err
}
