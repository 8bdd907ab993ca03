package h2

import (
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestServerStalledBodyGets408 sends part of a request body and then
// nothing: past the body idle timeout the handler's read fails with
// ErrBodyIdle and the client gets 408 "stream timeout", as Envoy's
// stream_idle_timeout answers a stream whose response has not started. A
// body that keeps arriving, however slowly, is read whole.
func TestServerStalledBodyGets408(t *testing.T) {
	const idle = 600 * time.Millisecond
	readErr := make(chan error, 2)
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		readErr <- err
		if err == nil {
			w.Header().Set("x-read", http.StatusText(http.StatusOK))
			_, _ = w.Write([]byte{byte(n)})
		}
	}), ServerConfig{BodyIdleTimeout: idle})

	t.Run("stalled", func(t *testing.T) {
		p := dialPeer(t, addr)
		p.headers(1, false, post("/")...)
		if err := p.fr.WriteData(1, false, []byte("part")); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		h := p.until(func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
		waited := time.Since(start)
		if got := h.PseudoValue("status"); got != "408" {
			t.Fatalf("got :status %q, want 408", got)
		}
		if waited < idle {
			t.Fatalf("answered after %v, before the %v idle timeout", waited, idle)
		}
		if err := <-readErr; !errors.Is(err, ErrBodyIdle) {
			t.Fatalf("the handler's read ended with %v, want ErrBodyIdle", err)
		}
		t.Logf("408 after %v with a %v idle timeout", waited.Round(time.Millisecond), idle)
	})
	t.Run("trickling", func(t *testing.T) {
		p := dialPeer(t, addr)
		p.headers(1, false, post("/")...)
		// Five pieces, each after well under the idle timeout: the body
		// takes longer than the timeout in all, but never idles for it.
		for i := range 5 {
			tick := time.NewTimer(idle / 6)
			<-tick.C // pacing the sender, not waiting for the server
			if err := p.fr.WriteData(1, i == 4, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		h := p.until(func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
		if got := h.PseudoValue("status"); got != "200" {
			t.Fatalf("got :status %q, want 200 for a body that kept arriving", got)
		}
		if err := <-readErr; err != nil {
			t.Fatalf("the handler's read ended with %v", err)
		}
	})
}
