package h2

import (
	"bytes"
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
