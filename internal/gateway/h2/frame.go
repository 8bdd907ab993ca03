// Package h2 is the gateway's HTTP/2 over cleartext (h2c, prior
// knowledge): a server for the listeners and a client for the upstream
// pools. Both batch their writes as gRPC-Go's loopy writer does: frames of
// every stream are appended to one connection buffer and written with one
// system call per batch, instead of Go's net/http, which flushes each
// frame of a response (headers, data, trailers) separately. Frames are
// read with golang.org/x/net/http2's Framer, which checks frame sizes,
// CONTINUATION sequences, HPACK and the header list size limit.
package h2

import (
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// Protocol defaults.
const (
	// ClientPreface starts every HTTP/2 connection (RFC 9113 §3.4).
	ClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	// defaultFrameSize is SETTINGS_MAX_FRAME_SIZE's initial value; it is
	// also the largest frame this package accepts.
	defaultFrameSize = 16384
	// defaultWindow is the initial flow-control window (RFC 9113 §6.9.2).
	defaultWindow = 65535
	// maxWindow is the largest flow-control window (2^31-1).
	maxWindow = 1<<31 - 1
	// maxPending bounds the bytes queued for the socket beyond what the
	// peer's flow-control windows allow: a peer that sends PINGs or
	// SETTINGS and never reads the answers is disconnected (the ping and
	// settings floods of CVE-2019-9512/9515).
	maxPending = 4 << 20
	// minData is the smallest DATA frame queued when the connection is
	// near its buffer limit: rather wait than send slivers.
	minData = 4 << 10
	// writeChunk is the most written in one call: the write timeout
	// bounds the time the peer takes to accept each piece.
	writeChunk = 64 << 10
)

var errClosed = errors.New("h2: connection closed")

// appendFrameHeader appends a frame header (RFC 9113 §4.1).
func appendFrameHeader(b []byte, length int, t http2.FrameType, flags http2.Flags, stream uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), byte(t), byte(flags),
		byte(stream>>24)&0x7f, byte(stream>>16), byte(stream>>8), byte(stream))
}

func appendData(b []byte, stream uint32, p []byte, end bool) []byte {
	var fl http2.Flags
	if end {
		fl = http2.FlagDataEndStream
	}
	return append(appendFrameHeader(b, len(p), http2.FrameData, fl, stream), p...)
}

// appendHeaders appends an encoded header block as one HEADERS frame and
// as many CONTINUATION frames as maxFrame requires.
func appendHeaders(b []byte, stream uint32, block []byte, end bool, maxFrame int) []byte {
	var fl http2.Flags
	if end {
		fl = http2.FlagHeadersEndStream
	}
	first := true
	for {
		n := min(len(block), maxFrame)
		last := n == len(block)
		t := http2.FrameContinuation
		if first {
			t = http2.FrameHeaders
		}
		f := fl
		if !first {
			f = 0
		}
		if last {
			f |= http2.FlagHeadersEndHeaders
		}
		b = append(appendFrameHeader(b, n, t, f, stream), block[:n]...)
		block = block[n:]
		first = false
		if last {
			return b
		}
	}
}

func appendWindowUpdate(b []byte, stream uint32, incr uint32) []byte {
	return binary.BigEndian.AppendUint32(appendFrameHeader(b, 4, http2.FrameWindowUpdate, 0, stream), incr&0x7fffffff)
}

func appendRST(b []byte, stream uint32, code http2.ErrCode) []byte {
	return binary.BigEndian.AppendUint32(appendFrameHeader(b, 4, http2.FrameRSTStream, 0, stream), uint32(code))
}

func appendGoAway(b []byte, last uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 8, http2.FrameGoAway, 0, 0)
	b = binary.BigEndian.AppendUint32(b, last&0x7fffffff)
	return binary.BigEndian.AppendUint32(b, uint32(code))
}

func appendPingAck(b []byte, data [8]byte) []byte {
	return append(appendFrameHeader(b, 8, http2.FramePing, http2.FlagPingAck, 0), data[:]...)
}

func appendSettingsAck(b []byte) []byte {
	return appendFrameHeader(b, 0, http2.FrameSettings, http2.FlagSettingsAck, 0)
}

func appendSettings(b []byte, s ...http2.Setting) []byte {
	b = appendFrameHeader(b, 6*len(s), http2.FrameSettings, 0, 0)
	for _, v := range s {
		b = binary.BigEndian.AppendUint16(b, uint16(v.ID))
		b = binary.BigEndian.AppendUint32(b, v.Val)
	}
	return b
}

// writer is a connection's write side. Frames are appended to buf under
// the owner's lock. A stream's ordinary frames (a request sent, a response
// finished, a window returned) are handed to the flusher goroutine
// (flushLater), which lets the other ready goroutines run before it
// writes: under load every stream that finishes meanwhile joins the same
// system call, as gRPC-Go's loopy writer batches (one write carried about
// one request before, several now). The frame reader never writes itself
// (a peer that stops reading would block it). flushLocked writes at once,
// from whichever goroutine finds no write under way; the waits for room
// and window use it.
//
// A peer that stops reading is bounded twice: DATA is queued only while
// the unsent bytes are under limit (waitRoom), as Envoy's watermark
// buffers hold a connection's streams past per_connection_buffer_limit_bytes,
// and a write the peer has not accepted within timeout fails, which
// closes the connection.
type writer struct {
	nc       net.Conn
	mu       *sync.Mutex // the connection's lock, guarding buf
	buf      []byte
	spare    []byte
	writing  bool
	inflight int        // bytes of the write under way
	peak     int        // the most held unsent, for tests
	idle     sync.Cond  // signalled when a write ends
	room     *sync.Cond // the owner's, broadcast when a write has gone out
	err      error
	kick     chan struct{} // wakes the flusher goroutine for the reader

	limit    int
	timeout  time.Duration
	deadline time.Time // the write deadline set on nc
	final    bool      // a closing deadline is set; keep it
}

// writeLimits bound what a peer that stops reading costs.
type writeLimits struct {
	buffer  int           // the most DATA queued unsent
	timeout time.Duration // the longest a write may wait for the peer
}

func newWriter(nc net.Conn, mu *sync.Mutex, room *sync.Cond, lim writeLimits) *writer {
	// A limit under a frame would let no full frame through.
	w := &writer{nc: nc, mu: mu, buf: make([]byte, 0, 4096), spare: make([]byte, 0, 4096), kick: make(chan struct{}, 1),
		room: room, limit: max(lim.buffer, defaultFrameSize), timeout: lim.timeout}
	w.idle.L = mu
	return w
}

// unsent is what the peer has not yet taken: the queue and the write
// under way.
func (w *writer) unsent() int { return len(w.buf) + w.inflight }

// roomLocked is how much DATA may be queued now, at most want; 0 rather
// than a frame smaller than minData.
func (w *writer) roomLocked(want int) int {
	u := w.unsent()
	r := w.limit - u
	if r < min(want, minData) {
		return 0
	}
	n := min(want, r)
	if u+n > w.peak {
		w.peak = u + n
	}
	return n
}

// waitRoomLocked waits until want bytes of DATA (or minData) may be
// queued or stop says the stream
// or connection has ended (stop is checked whenever room is broadcast).
// With nothing being written it writes the queue itself. Returns the
// write error, if any.
func (w *writer) waitRoomLocked(want int, stop func() bool) error {
	for w.roomLocked(want) == 0 && w.err == nil && !stop() {
		if !w.writing {
			_ = w.flushLocked()
			continue
		}
		w.room.Wait()
	}
	return w.err
}

// closingDeadline bounds the last writes before the connection closes.
func (w *writer) closingDeadline(d time.Duration) {
	w.final = true
	w.deadline = time.Now().Add(d)
	_ = w.nc.SetWriteDeadline(w.deadline)
}

// drainLocked waits for the write under way and writes what is queued,
// before the connection closes.
func (w *writer) drainLocked() error {
	for w.writing {
		w.idle.Wait()
	}
	return w.flushLocked()
}

// armLocked makes sure the coming write fails if the peer has not taken
// it within timeout (to 1.5 x timeout): the deadline is moved only when
// less than timeout is left, so that a busy connection does not pay a
// timer update per write.
func (w *writer) armLocked() {
	if w.final {
		return
	}
	now := time.Now()
	if w.deadline.Sub(now) >= w.timeout {
		return
	}
	w.deadline = now.Add(w.timeout + w.timeout/2)
	_ = w.nc.SetWriteDeadline(w.deadline)
}

// flushLocked writes what is queued, or leaves it to the write under way.
// Called with w.mu held; returns with it held. A failed write closes the
// connection: the reader then fails and ends every stream.
func (w *writer) flushLocked() error {
	if n := w.unsent(); n > w.peak {
		w.peak = n
	}
	if w.writing || len(w.buf) == 0 {
		return w.err
	}
	w.writing = true
	for len(w.buf) > 0 && w.err == nil {
		out := w.buf
		w.buf, w.spare = w.spare[:0], nil
		// A large batch goes in pieces, each with the whole timeout:
		// a slow peer that keeps reading is not cut, one that stops is.
		for off := 0; off < len(out) && w.err == nil; {
			n := min(len(out)-off, writeChunk)
			w.inflight = len(out) - off
			w.armLocked()
			w.mu.Unlock()
			_, err := w.nc.Write(out[off : off+n])
			w.mu.Lock()
			off += n
			if err != nil && w.err == nil {
				w.err = err
				_ = w.nc.Close()
			}
			w.inflight = 0
			w.room.Broadcast()
		}
		if cap(out) <= 1<<20 {
			w.spare = out[:0]
		} else {
			w.spare = make([]byte, 0, 4096)
		}
	}
	if w.err != nil {
		w.buf = w.buf[:0]
	}
	w.writing = false
	w.idle.Broadcast()
	return w.err
}

// flushLater asks the flusher goroutine to write what is queued. Called
// with w.mu held.
func (w *writer) flushLater() {
	if n := w.unsent(); n > w.peak {
		w.peak = n
	}
	if w.writing || len(w.buf) == 0 {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// overloaded says whether the queue has grown past maxPending plus what
// flow control lets the peer be sent (extra).
func (w *writer) overloaded(extra int) bool { return len(w.buf) > maxPending+extra }

// flusher runs flushLater's writes until done is closed.
func (w *writer) flusher(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-w.kick:
			// Let the goroutines that are ready run first: under load
			// they queue more frames, and one system call carries them
			// all (gRPC-Go's loopy writer yields the same way).
			runtime.Gosched()
			w.mu.Lock()
			_ = w.flushLocked()
			w.mu.Unlock()
		}
	}
}

// headerBuilder fills an http.Header whose values share one backing
// array: one allocation for the values rather than one per name. Each
// name's slice is capacity-capped, so a later append copies out of it.
type headerBuilder struct {
	h    http.Header
	vals []string
}

func newHeaderBuilder(n int) headerBuilder {
	return headerBuilder{h: make(http.Header, n), vals: make([]string, 0, n)}
}

func (b *headerBuilder) add(k, v string) {
	if old, ok := b.h[k]; ok {
		b.h[k] = append(old, v)
		return
	}
	b.vals = append(b.vals, v)
	n := len(b.vals)
	b.h[k] = b.vals[n-1 : n : n]
}

// nameCache maps lower-case header names to canonical ones (or back),
// bounded so that a peer sending new names cannot grow it.
type nameCache map[string]string

func (c nameCache) get(name string, convert func(string) string) string {
	if v, ok := c[name]; ok {
		return v
	}
	v := convert(name)
	if len(c) < 256 {
		c[name] = v
	}
	return v
}
