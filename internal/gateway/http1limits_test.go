package gateway_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/maestro-ml/maestro/internal/gateway"
)

// bytesBackend answers /bytes?n=N with N bytes in 32 KiB writes and
// reports on cut how far it got when a write failed; /small answers "ok".
func bytesBackend(t *testing.T, cut chan<- int) *backend {
	t.Helper()
	chunk := []byte(strings.Repeat("x", 32<<10))
	return startBackend(t, "app", func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/bytes" {
			_, _ = w.Write([]byte("ok"))
			return
		}
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("content-length", strconv.Itoa(n))
		sent := 0
		for sent < n {
			k, err := w.Write(chunk[:min(len(chunk), n-sent)])
			sent += k
			if err != nil {
				select {
				case cut <- sent:
				default:
				}
				return
			}
		}
	})
}

// http1Gateway runs a gateway whose edge listener routes everything to b
// over h2c, with the given write and stream idle timeouts, and returns
// the listener.
func http1Gateway(t *testing.T, b *backend, writeTimeout, idle time.Duration) string {
	t.Helper()
	cp := startFakeCP(t)
	cp.set(t, "gw", resources(edgeListener(t), routeTable(prefixRoute("app", "/", toCluster("app"))),
		[]*clusterv3.Cluster{edsCluster(t, "app", true)}, []*endpointv3.ClusterLoadAssignment{endpoints(t, "app", b.addr)}))
	gw := startGateway(t, "gw", cp.addr, func(c *gateway.Config) {
		c.WriteTimeout, c.StreamIdleTimeout = writeTimeout, idle
	})
	return gw.waitLive(t)
}

// rawRequest opens a connection and sends one HTTP/1.1 request on it.
func rawRequest(t *testing.T, addr, path string, extra ...string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	req := "GET " + path + " HTTP/1.1\r\nHost: edge\r\n" + strings.Join(extra, "") + "\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c
}

// smallGet makes one request on a connection of its own, closed after.
func smallGet(addr string) error {
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(c, "GET /small HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK || string(body) != "ok" {
		return fmt.Errorf("got %d %q", res.StatusCode, body)
	}
	return nil
}

// waitGoroutineCount waits, bounded, for the goroutine count to come back
// to base.
func waitGoroutineCount(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded by deadline
	}
}

// TestHTTP1ClientThatStopsReadingIsCut asks over HTTP/1.1 for far more than
// the socket buffers hold and never reads: the gateway closes the
// connection once a write has waited past the write timeout, the upstream
// stream is reset, another client is served meanwhile and no goroutine is
// left behind.
func TestHTTP1ClientThatStopsReadingIsCut(t *testing.T) {
	const (
		timeout = 500 * time.Millisecond
		answer  = 64 << 20
	)
	cut := make(chan int, 1)
	addr := http1Gateway(t, bytesBackend(t, cut), timeout, 0)
	if err := smallGet(addr); err != nil { // warms the upstream pool
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()

	bad := rawRequest(t, addr, "/bytes?n="+strconv.Itoa(answer))
	start := time.Now()
	served, upstreamSent := 0, 0
	for upstreamSent == 0 {
		select {
		case upstreamSent = <-cut:
		default:
			if time.Since(start) > waitLimit {
				t.Fatalf("the client that stopped reading was not cut within %v", waitLimit)
			}
			if err := smallGet(addr); err != nil {
				t.Fatalf("second client while the first is stuck: %v", err)
			}
			served++
		}
	}
	cutAfter := time.Since(start)
	if cutAfter < timeout {
		t.Errorf("cut after %v, before the %v write timeout", cutAfter, timeout)
	}
	if served == 0 {
		t.Error("no request of the second client served while the first was stuck")
	}

	// The client's side ends (EOF, or a reset) once what the buffers held
	// is read: the gateway closed the connection.
	_ = bad.SetReadDeadline(time.Now().Add(waitLimit))
	got, err := io.Copy(io.Discard, bad)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open %v after the cut, %d bytes read", waitLimit, got)
	}
	if got >= answer {
		t.Fatalf("client read %d bytes, the whole answer: nothing was cut", got)
	}
	waitGoroutineCount(t, base)
	t.Logf("%v write timeout: cut %v after the request, upstream had sent %d bytes, client got %d; %d requests of a second client served meanwhile",
		timeout, cutAfter.Round(time.Millisecond), upstreamSent, got, served)
}

// TestHTTP1SlowReaderIsNotCut reads a large answer far slower than the
// gateway could send it, taking several write timeouts in all: a client
// that keeps reading is not cut. Linux wakes a writer blocked on a full
// socket only once a third of the send buffer (autotuned up to 4 MiB) has
// drained, so each write may wait for ~1.4 MB to be read: the pace and
// the timeout leave that a wide margin.
func TestHTTP1SlowReaderIsNotCut(t *testing.T) {
	const (
		timeout = 1500 * time.Millisecond
		answer  = 16 << 20
		piece   = 32 << 10
		every   = 10 * time.Millisecond // ~3.2 MB/s
	)
	addr := http1Gateway(t, bytesBackend(t, make(chan int, 1)), timeout, 0)
	c := rawRequest(t, addr, "/bytes?n="+strconv.Itoa(answer))
	if err := c.(*net.TCPConn).SetReadBuffer(piece); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(waitLimit))
	res, err := http.ReadResponse(bufio.NewReaderSize(c, piece), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	tick := time.NewTicker(every)
	defer tick.Stop()
	buf := make([]byte, piece)
	got := 0
	for {
		<-tick.C // the client's pace
		n, err := res.Body.Read(buf)
		got += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("cut after %d bytes, %v: %v", got, time.Since(start), err)
		}
	}
	took := time.Since(start)
	if got != answer {
		t.Fatalf("read %d bytes, want %d", got, answer)
	}
	if took < 2*timeout {
		t.Fatalf("read in %v: not slower than the %v write timeout, the test proves nothing", took, timeout)
	}
	t.Logf("%d bytes read in %d-byte pieces every %v with a %v write timeout: whole in %v", answer, piece, every, timeout, took.Round(time.Millisecond))
}

// TestHTTP1HeaderBlockLimit holds the request line and headers to Envoy's
// max_request_headers_kb default, 60 KiB: past it the answer is 431.
func TestHTTP1HeaderBlockLimit(t *testing.T) {
	addr := http1Gateway(t, bytesBackend(t, make(chan int, 1)), 0, 0)
	for _, tc := range []struct {
		name  string
		block int // request line and header block, final CRLF included
		want  int
	}{
		{"well under", 1 << 10, http.StatusOK},
		{"just under 60 KiB", 60<<10 - 64, http.StatusOK},
		{"just over 60 KiB", 60<<10 + 64, http.StatusRequestHeaderFieldsTooLarge},
		{"over 1 MiB", 1<<20 + 1, http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const head = "GET /small HTTP/1.1\r\nHost: edge\r\nConnection: close\r\nX-Pad: \r\n\r\n"
			pad := strings.Repeat("p", tc.block-len(head))
			c, err := net.DialTimeout("tcp", addr, waitLimit)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(waitLimit))
			// The gateway may answer before it has read all of a block
			// too long; the write then fails, which is fine.
			go func() {
				_, _ = io.WriteString(c, "GET /small HTTP/1.1\r\nHost: edge\r\nConnection: close\r\nX-Pad: "+pad+"\r\n\r\n")
			}()
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = res.Body.Close()
			if res.StatusCode != tc.want {
				t.Fatalf("%d-byte header block: status %d, want %d", tc.block, res.StatusCode, tc.want)
			}
		})
	}
}

// TestHTTP1StalledBodyGets408 sends part of a request body and stops: the
// gateway answers 408 once a read has waited the stream idle timeout, as
// Envoy's stream_idle_timeout does, closes the connection and leaves no
// goroutine behind. A body that trickles in but keeps coming is not cut.
func TestHTTP1StalledBodyGets408(t *testing.T) {
	const idle = 400 * time.Millisecond
	addr := http1Gateway(t, bytesBackend(t, make(chan int, 1)), 0, idle)
	if err := smallGet(addr); err != nil { // warms the upstream pool
		t.Fatal(err)
	}

	t.Run("stalled", func(t *testing.T) {
		base := runtime.NumGoroutine()
		c := rawRequest(t, addr, "/small", "Content-Length: 1000\r\n")
		start := time.Now()
		if _, err := io.WriteString(c, strings.Repeat("b", 10)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(start.Add(waitLimit))
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		took := time.Since(start)
		if res.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "stream timeout") {
			t.Fatalf("got %d %q, want 408 stream timeout", res.StatusCode, body)
		}
		if took < idle {
			t.Fatalf("answered after %v, before the %v idle timeout", took, idle)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Fatal("connection still open after the 408")
		}
		waitGoroutineCount(t, base)
		t.Logf("%v stream idle timeout: 408 after %v", idle, took.Round(time.Millisecond))
	})

	t.Run("trickling", func(t *testing.T) {
		const (
			parts = 10
			every = idle / 4
		)
		c := rawRequest(t, addr, "/small", "Content-Length: "+strconv.Itoa(parts)+"\r\n")
		start := time.Now()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for range parts {
			<-tick.C // the client's pace
			if _, err := io.WriteString(c, "b"); err != nil {
				t.Fatal(err)
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(waitLimit))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		took := time.Since(start)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("a body sent a byte every %v got %d, want 200", every, res.StatusCode)
		}
		if took < 2*idle {
			t.Fatalf("body sent in %v: not longer than the %v idle timeout, the test proves nothing", took, idle)
		}
	})
}
