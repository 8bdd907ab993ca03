package h2

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"golang.org/x/net/http2"
)

// readLoop reads the server's frames until the connection fails.
func (cc *clientConn) readLoop() {
	var err error
	// Declared once: errors.As makes it escape, and a declaration in the
	// loop would cost an allocation per frame.
	var se http2.StreamError
	for {
		var f http2.Frame
		f, err = cc.frames.readFrame()
		if err != nil && errors.As(err, &se) {
			cc.mu.Lock()
			if cs := cc.streams[se.StreamID]; cs != nil {
				cc.resetLocked(cs, se.Code, se)
			}
			cc.w.flushLater()
			cc.mu.Unlock()
			continue
		}
		if err != nil {
			break
		}
		cc.mu.Lock()
		err = cc.process(f)
		cc.w.flushLater()
		cc.mu.Unlock()
		if err != nil {
			break
		}
	}
	cc.mu.Lock()
	var ce connError
	if errors.As(err, &ce) && !cc.closed {
		cc.w.buf = appendGoAway(cc.w.buf, 0, ce.code)
		_ = cc.w.flushLocked()
	}
	cc.closeLocked(fmt.Errorf("h2: connection to %s: %w", cc.addr, err))
	cc.mu.Unlock()
}

func (cc *clientConn) process(f http2.Frame) error {
	if cc.closed {
		// A failed write closed the connection under the reader: its
		// streams have their error already.
		return cc.err
	}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		if cs := cc.streams[f.StreamID]; cs != nil {
			cc.onHeaders(cs, f)
		}
	case *http2.DataFrame:
		return cc.onData(f)
	case *http2.RSTStreamFrame:
		if cs := cc.streams[f.StreamID]; cs != nil {
			err := error(http2.StreamError{StreamID: f.StreamID, Code: f.ErrCode})
			if f.ErrCode == http2.ErrCodeRefusedStream {
				err = ErrStreamRefused
			}
			if f.ErrCode == http2.ErrCodeNo && cs.remoteDone {
				err = nil // the answer is whole; the rest of the request is not wanted
			}
			cs.localDone = true
			if err != nil {
				cs.failLocked(err)
			}
			cc.removeLocked(cs, err == nil)
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		if !cc.sawSettings {
			// A server that names no limit gets Go's transport's
			// assumption rather than the 100 used until its SETTINGS.
			cc.sawSettings = true
			if _, ok := f.Value(http2.SettingMaxConcurrentStreams); !ok {
				cc.maxStreams = 1000
			}
		}
		if err := f.ForeachSetting(cc.applySetting); err != nil {
			return err
		}
		cc.w.buf = appendSettingsAck(cc.w.buf)
	case *http2.WindowUpdateFrame:
		return cc.onWindowUpdate(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			cc.w.buf = appendPingAck(cc.w.buf, f.Data)
		}
	case *http2.GoAwayFrame:
		cc.goneAway = true
		for id, cs := range cc.streams {
			if id > f.LastStreamID {
				cs.localDone = true
				cs.failLocked(ErrStreamRefused)
				cc.removeLocked(cs, false)
			}
		}
		cc.closeIfIdleLocked()
	case *http2.PushPromiseFrame:
		return connError{http2.ErrCodeProtocol, "PUSH_PROMISE with push disabled"}
	}
	if cc.w.overloaded(0) {
		return connError{http2.ErrCodeEnhanceYourCalm, "server does not read"}
	}
	return nil
}

func (cc *clientConn) applySetting(s http2.Setting) error {
	if err := s.Valid(); err != nil {
		return err
	}
	switch s.ID {
	case http2.SettingInitialWindowSize:
		delta := int64(s.Val) - int64(cc.peerWindow)
		cc.peerWindow = int32(s.Val)
		for _, cs := range cc.streams {
			cs.sendWindow += delta
			if cs.sendWindow > maxWindow {
				return connError{http2.ErrCodeFlowControl, "stream window overflow"}
			}
		}
		cc.flow.Broadcast()
	case http2.SettingMaxFrameSize:
		cc.peerFrame = int(s.Val)
	case http2.SettingHeaderTableSize:
		cc.henc.SetMaxDynamicTableSizeLimit(s.Val)
	case http2.SettingMaxConcurrentStreams:
		if s.Val > cc.maxStreams {
			cc.t.released() // room for requests waiting for MaxConns
		}
		cc.maxStreams = s.Val
	}
	return nil
}

func (cc *clientConn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	if f.StreamID == 0 {
		cc.sendWindow += int64(f.Increment)
		if f.Increment == 0 || cc.sendWindow > maxWindow {
			return connError{http2.ErrCodeFlowControl, "bad connection WINDOW_UPDATE"}
		}
		cc.flow.Broadcast()
		return nil
	}
	if cs := cc.streams[f.StreamID]; cs != nil {
		cs.sendWindow += int64(f.Increment)
		if f.Increment == 0 || cs.sendWindow > maxWindow {
			cc.resetLocked(cs, http2.ErrCodeFlowControl, errors.New("h2: bad stream WINDOW_UPDATE"))
		}
		cc.flow.Broadcast()
	}
	return nil
}

func (cc *clientConn) onHeaders(cs *clientStream, f *http2.MetaHeadersFrame) {
	if cs.err != nil && !cs.gotHeaders {
		return // the stream failed before its answer came
	}
	if cs.gotHeaders {
		// Trailers.
		if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
			cc.resetLocked(cs, http2.ErrCodeProtocol, errors.New("h2: malformed trailers"))
			return
		}
		if cs.list {
			cs.trailers = fieldList(f.RegularFields())
		} else {
			tb := newHeaderBuilder(len(f.Fields))
			for _, hf := range f.RegularFields() {
				tb.add(cc.canon.get(hf.Name, http.CanonicalHeaderKey), hf.Value)
			}
			cs.resp.Trailer = tb.h
		}
		cc.endRemoteLocked(cs)
		return
	}
	code, err := strconv.Atoi(f.PseudoValue("status"))
	if err != nil || code < 100 || code > 999 {
		cc.resetLocked(cs, http2.ErrCodeProtocol, errors.New("h2: malformed :status"))
		return
	}
	if code < 200 {
		return // informational
	}
	cs.rb.cs = cs
	cs.gotHeaders = true
	if cs.list {
		cs.lresp = ListResponse{Status: code, Header: fieldList(f.RegularFields()), Body: &cs.rb, cs: cs}
		if f.StreamEnded() {
			cs.lresp.Body = http.NoBody
			cc.endRemoteLocked(cs)
		}
		cs.wake()
		return
	}
	regular := f.RegularFields()
	hb := newHeaderBuilder(len(regular))
	length := int64(-1)
	for _, hf := range regular {
		hb.add(cc.canon.get(hf.Name, http.CanonicalHeaderKey), hf.Value)
		if hf.Name == "content-length" {
			if n, err := strconv.ParseInt(hf.Value, 10, 64); err == nil {
				length = n
			}
		}
	}
	resp := &http.Response{StatusCode: code, Status: statusLine(code),
		Proto: "HTTP/2.0", ProtoMajor: 2, Header: hb.h, ContentLength: length, Body: &cs.rb}
	cs.resp = resp
	if f.StreamEnded() {
		resp.Body = http.NoBody
		resp.ContentLength = 0
		cc.endRemoteLocked(cs)
	}
	cs.wake()
}

// statusLine is http.Response's Status for code, a constant for 200.
func statusLine(code int) string {
	if code == http.StatusOK {
		return "200 OK"
	}
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

// endRemoteLocked marks the response complete.
func (cc *clientConn) endRemoteLocked(cs *clientStream) {
	cs.remoteDone = true
	cs.wake()
	if cs.localDone {
		cc.removeLocked(cs, true)
	}
}

func (cc *clientConn) onData(f *http2.DataFrame) error {
	n := int64(f.Length)
	if n > cc.recvWindow {
		return connError{http2.ErrCodeFlowControl, "connection window exceeded"}
	}
	cc.recvWindow -= n
	cs := cc.streams[f.StreamID]
	if cs == nil || !cs.gotHeaders || cs.remoteDone {
		cc.refundLocked(n)
		if cs != nil {
			cc.resetLocked(cs, http2.ErrCodeProtocol, errors.New("h2: DATA before headers or after end"))
		}
		return nil
	}
	if n > cs.recvWindow {
		cc.refundLocked(n)
		cc.resetLocked(cs, http2.ErrCodeFlowControl, errors.New("h2: stream window exceeded"))
		return nil
	}
	cs.recvWindow -= n
	data := f.Data()
	if pad := n - int64(len(data)); pad > 0 {
		cc.refundLocked(pad)
		cs.recvUnacked += pad
	}
	if cs.bodyClosed {
		cc.refundLocked(int64(len(data)))
	} else {
		cs.body = append(cs.body, data...)
	}
	if f.StreamEnded() {
		cc.endRemoteLocked(cs)
	}
	cs.wake()
	return nil
}

// responseBody reads a stream's DATA; reading returns window to the
// server, and the request's context ends a wait for more.
type responseBody struct{ cs *clientStream }

func (b *responseBody) Read(p []byte) (int, error) {
	cs := b.cs
	cc := cs.cc
	cc.mu.Lock()
	for {
		if cs.off < len(cs.body) {
			n := copy(p, cs.body[cs.off:])
			cs.off += n
			if cs.off == len(cs.body) {
				cs.body, cs.off = cs.body[:0], 0
			}
			if cc.streams[cs.id] == cs {
				cc.consumedLocked(cs, int64(n))
			}
			cc.mu.Unlock()
			return n, nil
		}
		switch {
		case cs.remoteDone:
			cc.mu.Unlock()
			return 0, io.EOF
		case cs.err != nil:
			err := cs.err
			cc.mu.Unlock()
			return 0, err
		case cs.bodyClosed:
			cc.mu.Unlock()
			return 0, http.ErrBodyReadAfterClose
		}
		cc.mu.Unlock()
		select {
		case <-cs.wakeCh:
		case <-cs.ctx.Done():
			cc.mu.Lock()
			cc.resetLocked(cs, http2.ErrCodeCancel, cs.ctx.Err())
			_ = cc.w.flushLocked()
			cc.mu.Unlock()
			return 0, cs.ctx.Err()
		}
		cc.mu.Lock()
	}
}

func (cc *clientConn) consumedLocked(cs *clientStream, n int64) {
	cc.refundLocked(n)
	cs.recvUnacked += n
	if !cs.remoteDone && cs.recvUnacked >= clientStreamWindow/2 {
		cc.w.buf = appendWindowUpdate(cc.w.buf, cs.id, uint32(cs.recvUnacked))
		cs.recvWindow += cs.recvUnacked
		cs.recvUnacked = 0
	}
	cc.w.flushLater()
}

// Close abandons the rest of the response: the stream is reset if it has
// not ended.
func (b *responseBody) Close() error {
	cs := b.cs
	cc := cs.cc
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cs.bodyClosed {
		return nil
	}
	cs.bodyClosed = true
	if cc.streams[cs.id] == cs {
		if !cs.remoteDone {
			cc.resetLocked(cs, http2.ErrCodeCancel, errors.New("h2: response body closed"))
		} else {
			cc.removeLocked(cs, false)
		}
		cc.w.flushLater()
	}
	cs.body, cs.off = nil, 0
	return nil
}
