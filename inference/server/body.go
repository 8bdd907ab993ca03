package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// Body read limits; both default when zero in Config.
const (
	// DefaultBodyIdleTimeout cuts an upload that sends nothing for this
	// long: a client that stalls holds a connection, a goroutine and its
	// reservation for no purpose.
	DefaultBodyIdleTimeout = 10 * time.Second
	// DefaultBodyTimeout bounds reading one whole body: a 64 MiB body
	// at a slow 4 MB/s still fits.
	DefaultBodyTimeout = 30 * time.Second
)

var errBodyTimeout = errors.New("request body read timed out")

// bodyReader reads a request body under an idle deadline (renewed before
// each read) and a total deadline, through the connection's read deadline,
// and remembers the first read error so that it is reported as such and
// not as malformed JSON. Drain cuts it at once.
type bodyReader struct {
	r        io.Reader
	rc       *http.ResponseController
	idle     time.Duration
	deadline time.Time // total
	limit    int64

	mu  sync.Mutex
	cut bool
	eof bool
	err error
}

func (s *Server) newBodyReader(w http.ResponseWriter, r *http.Request) *bodyReader {
	limit := int64(s.cfg.MaxRequestBytes)
	return &bodyReader{
		r:        http.MaxBytesReader(w, r.Body, limit),
		rc:       http.NewResponseController(w),
		idle:     s.cfg.BodyIdleTimeout,
		deadline: time.Now().Add(s.cfg.BodyTimeout),
		limit:    limit,
	}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.cut {
		b.mu.Unlock()
		return 0, b.fail(fmt.Errorf("server is shutting down: %w", errBodyTimeout))
	}
	d := time.Now().Add(b.idle)
	if d.After(b.deadline) {
		d = b.deadline
	}
	// A connection that cannot take deadlines (a test recorder) reads
	// without them.
	_ = b.rc.SetReadDeadline(d)
	b.mu.Unlock()
	n, err := b.r.Read(p)
	switch {
	case errors.Is(err, io.EOF):
		// The server now watches the connection for the client going
		// away, under the deadline last set: clear it, or a model
		// evaluating longer than the idle timeout would see its request
		// cancelled.
		_ = b.rc.SetReadDeadline(time.Time{})
		b.mu.Lock()
		b.eof = true
		b.mu.Unlock()
	case err != nil:
		err = b.fail(err)
	}
	return n, err
}

// fail records the first read error, in the form callers map to statuses.
func (b *bodyReader) fail(err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		err = fmt.Errorf("request body is over the limit of %d bytes: %w", tooBig.Limit, errTooLarge)
	case errors.Is(err, os.ErrDeadlineExceeded):
		if time.Now().Before(b.deadline) {
			err = fmt.Errorf("request body: nothing received for %v: %w", b.idle, errBodyTimeout)
		} else {
			err = fmt.Errorf("request body not received in time: %w", errBodyTimeout)
		}
	case errors.Is(err, errBodyTimeout):
	default:
		err = invalidf("read request body: %v", err)
	}
	b.err = err
	return err
}

// unread reports whether the body was left before its end: the
// connection must then close after the answer, or the server would try to
// read the rest (up to 256 KiB) from a client that may never send it.
func (b *bodyReader) unread() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.eof
}

// readErr is the first read error, if any.
func (b *bodyReader) readErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// stop cuts the body: the read in progress fails now and later reads at
// once. Drain calls it for every body still being read.
func (b *bodyReader) stop() {
	b.mu.Lock()
	b.cut = true
	_ = b.rc.SetReadDeadline(time.Now().Add(-time.Second))
	b.mu.Unlock()
}

// readers tracks the bodies being read, so that drain can cut them.
type readers struct {
	mu       sync.Mutex
	draining bool
	set      map[*bodyReader]struct{}
}

// add registers b; it is cut at once when the server already drains.
func (rs *readers) add(b *bodyReader) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.draining {
		b.stop()
		return
	}
	if rs.set == nil {
		rs.set = map[*bodyReader]struct{}{}
	}
	rs.set[b] = struct{}{}
}

func (rs *readers) remove(b *bodyReader) {
	rs.mu.Lock()
	delete(rs.set, b)
	rs.mu.Unlock()
}

// cutAll stops every body being read, and the ones registered later.
func (rs *readers) cutAll() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.draining = true
	for b := range rs.set {
		b.stop()
	}
	return len(rs.set)
}
