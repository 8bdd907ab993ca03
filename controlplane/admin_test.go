package controlplane

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestAdminStopsWithAnUnusedConnectionOpen: a connection that never sends
// a request (an HTTP/1.1 pool's spare dial) outlives Shutdown's drain, as
// net/http treats it as busy for 5 s; the stop closes it and succeeds
// rather than failing the whole control plane.
func TestAdminStopsWithAnUnusedConnectionOpen(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serveAdmin(ctx, slog.New(slog.DiscardHandler), lis, http.NotFoundHandler(), 50*time.Millisecond)
	}()
	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A request on a second connection proves the server accepted the
	// first one before the stop (connections are accepted in order).
	resp, err := http.Get("http://" + lis.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stop with an unused connection open: %v", err)
	}
	buf := make([]byte, 1)
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("the unused connection is still open after the stop: read %d bytes", n)
	}
}
