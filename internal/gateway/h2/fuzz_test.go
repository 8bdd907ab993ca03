package h2

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// seedFrames encodes a few frame sequences, well formed and not, to start
// the fuzzer from.
func seedFrames() [][]byte {
	var out [][]byte
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	fields := [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/p"}, {"te", "trailers"}}
	for _, kv := range fields {
		_ = enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	block := append([]byte(nil), hb.Bytes()...)
	build := func(write func(fr *http2.Framer)) []byte {
		var b bytes.Buffer
		fr := http2.NewFramer(&b, nil)
		fr.AllowIllegalWrites = true
		write(fr)
		return b.Bytes()
	}
	out = append(out,
		build(func(fr *http2.Framer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true})
			_ = fr.WriteData(1, true, []byte("body"))
		}),
		build(func(fr *http2.Framer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:3]})
			_ = fr.WriteContinuation(1, true, block[3:])
			_ = fr.WriteWindowUpdate(1, 100)
			_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
			_ = fr.WritePing(false, [8]byte{})
		}),
		build(func(fr *http2.Framer) {
			_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 14})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block, EndHeaders: true, EndStream: true})
			_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		}),
		build(func(fr *http2.Framer) {
			_ = fr.WriteData(0, false, []byte("x"))
			_ = fr.WritePriority(1, http2.PriorityParam{StreamDep: 1})
		}),
		[]byte{0, 0, 0, 0xff, 0, 0, 0, 0, 1},
	)
	return out
}

// FuzzServerFrames feeds arbitrary bytes after the preface and SETTINGS:
// the server must neither panic nor hang, whatever the frames say.
func FuzzServerFrames(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	srv := NewServer(ServerConfig{Handler: http.HandlerFunc(echo), StreamWindow: 1 << 16})
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConn(server)
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		var hello bytes.Buffer
		_ = http2.NewFramer(&hello, nil).WriteSettings()
		_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = client.Write(hello.Bytes())
		_, _ = client.Write(data)
		_ = client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("connection not torn down 10 s after the peer closed")
		}
	})
}

// FuzzClientFrames answers a request with arbitrary bytes after the
// server's SETTINGS, then closes: the client must neither panic nor hang;
// the request ends with a response or an error.
func FuzzClientFrames(f *testing.F) {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	block := append([]byte(nil), hb.Bytes()...)
	hb.Reset()
	_ = enc.WriteField(hpack.HeaderField{Name: "grpc-status", Value: "0"})
	trailers := append([]byte(nil), hb.Bytes()...)
	build := func(write func(fr *http2.Framer)) []byte {
		var b bytes.Buffer
		fr := http2.NewFramer(&b, nil)
		fr.AllowIllegalWrites = true
		write(fr)
		return b.Bytes()
	}
	f.Add(build(func(fr *http2.Framer) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true})
		_ = fr.WriteData(1, false, []byte("answer"))
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: trailers, EndHeaders: true, EndStream: true})
	}))
	f.Add(build(func(fr *http2.Framer) {
		_ = fr.WriteWindowUpdate(0, 1<<20)
		_ = fr.WritePing(false, [8]byte{9})
		_ = fr.WriteRSTStream(1, http2.ErrCodeRefusedStream)
	}))
	f.Add(build(func(fr *http2.Framer) {
		_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		_ = fr.WriteData(1, true, []byte("late"))
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		tr := &Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return client, nil }}
		defer tr.CloseIdleConnections()
		go func() { _, _ = io.Copy(io.Discard, server) }()
		go func() {
			// The fake server says its piece and hangs up: whatever it
			// said, the request must end.
			defer server.Close()
			var hello bytes.Buffer
			_ = http2.NewFramer(&hello, nil).WriteSettings()
			_ = server.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = server.Write(append(hello.Bytes(), data...))
		}()
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://fuzz/svc/Method", bytes.NewReader([]byte("ask")))
		req.ContentLength = 3
		done := make(chan struct{})
		go func() {
			defer close(done)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("request not ended 10 s after the server hung up")
		}
	})
}
