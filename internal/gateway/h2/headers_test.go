package h2

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// headerSeeds are frame sequences that reach each branch of a header
// block's reading: plain, CONTINUATION, trailers, too large, invalid
// names and values, pseudo-header faults, bad HPACK, frames out of order.
func headerSeeds(t testing.TB) [][]byte {
	t.Helper()
	block := func(fields ...string) []byte {
		var b bytes.Buffer
		enc := hpack.NewEncoder(&b)
		for i := 0; i+1 < len(fields); i += 2 {
			if err := enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}); err != nil {
				t.Fatal(err)
			}
		}
		return b.Bytes()
	}
	req := block(":method", "POST", ":scheme", "http", ":path", "/x", ":authority", "a", "content-type", "application/grpc", "te", "trailers")
	big := make([]byte, 3000)
	for i := range big {
		big[i] = 'v'
	}
	type frame struct {
		stream uint32
		frag   []byte
		end    bool // END_HEADERS
		cont   bool // CONTINUATION rather than HEADERS
	}
	seq := func(fs ...frame) []byte {
		var b bytes.Buffer
		fr := http2.NewFramer(&b, nil)
		for _, f := range fs {
			var err error
			if f.cont {
				err = fr.WriteContinuation(f.stream, f.end, f.frag)
			} else {
				err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.stream, BlockFragment: f.frag, EndHeaders: f.end, EndStream: true})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		_ = fr.WriteData(1, true, []byte("body"))
		_ = fr.WritePing(false, [8]byte{1})
		return b.Bytes()
	}
	return [][]byte{
		seq(frame{1, req, true, false}, frame{3, req, true, false}),
		seq(frame{1, req[:5], false, false}, frame{1, req[5:], true, true}),
		seq(frame{1, block("grpc-status", "0", "grpc-message", "ok"), true, false}),
		seq(frame{1, block(":status", "200", "trailer", "a, b,c"), true, false}),
		seq(frame{1, block(":method", "GET", "x-big", string(big)), true, false}),
		seq(frame{1, block(":method", "GET", "X-Upper", "1"), true, false}),
		seq(frame{1, block(":method", "GET", "x", "bad\x00value"), true, false}),
		seq(frame{1, block("x", "1", ":path", "/"), true, false}),
		seq(frame{1, block(":method", "GET", ":method", "GET"), true, false}),
		seq(frame{1, block(":method", "GET", ":status", "200"), true, false}),
		seq(frame{1, block(":bogus", "1"), true, false}),
		seq(frame{1, []byte{0xff, 0xff, 0xff}, true, false}),
		seq(frame{1, req[:5], false, false}, frame{3, req[5:], true, true}),
		seq(frame{1, req[:5], false, false}),
		seq(frame{1, req, true, true}),
		seq(frame{1, block(":method", "GET", "x", "bad\x00value"), false, false}, frame{1, req, true, true}),
	}
}

// readAll reads every frame of in with next and describes each result.
func readAll(in []byte, next func(*http2.Framer) (http2.Frame, error), setup func(*http2.Framer)) []string {
	fr := http2.NewFramer(nil, bytes.NewReader(in))
	fr.MaxHeaderListSize = 1024
	setup(fr)
	var out []string
	for range 64 {
		f, err := next(fr)
		var se http2.StreamError
		var ce http2.ConnectionError
		switch {
		case errors.As(err, &se):
			out = append(out, "stream error "+se.Error())
			continue
		case errors.As(err, &ce):
			out = append(out, "connection error "+ce.Error())
			return out
		case err != nil:
			out = append(out, "error "+err.Error())
			return out
		}
		if mh, ok := f.(*http2.MetaHeadersFrame); ok {
			out = append(out, fmt.Sprintf("headers %d end=%v truncated=%v", mh.StreamID, mh.StreamEnded(), mh.Truncated))
			out = append(out, fieldsString(mh.Fields))
			continue
		}
		out = append(out, "frame "+f.Header().String())
	}
	return out
}

func fieldsString(fs []hpack.HeaderField) string {
	var b bytes.Buffer
	for _, f := range fs {
		b.WriteString(f.Name + "=" + f.Value + ";")
	}
	return b.String()
}

// sameAsFramer checks that frameReader reads in as x/net's Framer with
// ReadMetaHeaders does: the same frames, fields, truncation and errors.
func sameAsFramer(t *testing.T, in []byte) {
	want := readAll(in, (*http2.Framer).ReadFrame, func(fr *http2.Framer) {
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	})
	var r *frameReader
	got := readAll(in, func(*http2.Framer) (http2.Frame, error) { return r.readFrame() }, func(fr *http2.Framer) {
		r = newFrameReader(fr)
	})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("frameReader read\n%q\nx/net's Framer read\n%q", got, want)
	}
}

func TestFrameReaderMatchesFramer(t *testing.T) {
	for i, in := range headerSeeds(t) {
		t.Run(string(rune('a'+i)), func(t *testing.T) { sameAsFramer(t, in) })
	}
}

func FuzzFrameReader(f *testing.F) {
	for _, in := range headerSeeds(f) {
		f.Add(in)
	}
	f.Fuzz(sameAsFramer)
}
