package h2

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// defaultMaxHeaderList is x/net's Framer limit when MaxHeaderListSize is 0.
const defaultMaxHeaderList = 16 << 20

var errPseudoAfterRegular = errors.New("pseudo header field after regular")

// frameReader reads frames as x/net's Framer does with ReadMetaHeaders
// set: a HEADERS frame and its CONTINUATIONs come back as one
// *http2.MetaHeadersFrame, with the same checks, limits and errors. The
// difference is that the MetaHeadersFrame and its field slice are reused
// from one header block to the next (the Framer allocates both, a closure
// and its variables per block, and grows the slice field by field): the
// returned frame is valid until the next read, as the Framer's other frames
// are.
type frameReader struct {
	fr  *http2.Framer
	dec *hpack.Decoder
	mh  http2.MetaHeadersFrame

	// The block being decoded.
	headersLeft, trailersLeft uint32
	sawRegular                bool
	invalid                   error
}

// newFrameReader reads from fr, whose MaxHeaderListSize bounds a block and
// whose ReadMetaHeaders must be nil.
func newFrameReader(fr *http2.Framer) *frameReader {
	r := &frameReader{fr: fr}
	r.dec = hpack.NewDecoder(4096, r.emit)
	return r
}

func (r *frameReader) maxList() uint32 {
	if r.fr.MaxHeaderListSize == 0 {
		return defaultMaxHeaderList
	}
	return r.fr.MaxHeaderListSize
}

// readFrame reads the next frame.
func (r *frameReader) readFrame() (http2.Frame, error) {
	f, err := r.fr.ReadFrame()
	if err != nil {
		return f, err
	}
	if hf, ok := f.(*http2.HeadersFrame); ok {
		return r.readBlock(hf)
	}
	return f, nil
}

func (r *frameReader) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		// The value stays out of the error: it may be sensitive.
		r.invalid = fmt.Errorf("invalid header field value for %q", hf.Name)
	}
	if strings.HasPrefix(hf.Name, ":") {
		if r.sawRegular {
			r.invalid = errPseudoAfterRegular
		}
	} else {
		r.sawRegular = true
		if !httpguts.ValidHeaderFieldName(hf.Name) || !isLower(hf.Name) {
			r.invalid = fmt.Errorf("invalid header field name %q", hf.Name)
		}
	}
	if r.invalid != nil {
		r.dec.SetEmitEnabled(false)
		return
	}
	left := &r.headersLeft
	size := hf.Size()
	if hf.Name == "trailer" {
		// Counted per declared name, as the Framer counts it.
		left = &r.trailersLeft
		n := strings.Count(hf.Value, ",") + 1
		size = uint32(len(hf.Value)-n+1) + uint32(n)*hpack.HeaderField{}.Size()
	}
	if size > *left {
		r.dec.SetEmitEnabled(false)
		r.mh.Truncated = true
		r.headersLeft, r.trailersLeft = 0, 0
		return
	}
	*left -= size
	r.mh.Fields = append(r.mh.Fields, hf)
}

// readBlock decodes hf's header block, reading its CONTINUATIONs.
func (r *frameReader) readBlock(hf *http2.HeadersFrame) (http2.Frame, error) {
	clear(r.mh.Fields) // the last block's strings
	r.mh = http2.MetaHeadersFrame{HeadersFrame: hf, Fields: r.mh.Fields[:0]}
	r.headersLeft, r.trailersLeft = r.maxList(), r.maxList()
	r.sawRegular, r.invalid = false, nil
	r.dec.SetEmitEnabled(true)
	limit := int(r.maxList())
	if limit < 0 {
		limit = 0 // no limit, as the Framer does past an int
	}
	r.dec.SetMaxStringLength(limit)

	frag, ended := hf.HeaderBlockFragment(), hf.HeadersEnded()
	for {
		// A block far past the limit, or any CONTINUATION after an
		// invalid field, ends the connection before it is decoded.
		if int64(len(frag)) > 2*int64(r.headersLeft+r.trailersLeft) || r.invalid != nil {
			return &r.mh, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if _, err := r.dec.Write(frag); err != nil {
			return &r.mh, http2.ConnectionError(http2.ErrCodeCompression)
		}
		if ended {
			break
		}
		f, err := r.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		cf := f.(*http2.ContinuationFrame) // the Framer checks the order
		frag, ended = cf.HeaderBlockFragment(), cf.HeadersEnded()
	}
	if err := r.dec.Close(); err != nil {
		return &r.mh, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if r.invalid != nil {
		return nil, http2.StreamError{StreamID: hf.StreamID, Code: http2.ErrCodeProtocol, Cause: r.invalid}
	}
	if err := checkPseudos(r.mh.PseudoFields()); err != nil {
		return nil, http2.StreamError{StreamID: hf.StreamID, Code: http2.ErrCodeProtocol, Cause: err}
	}
	return &r.mh, nil
}

// checkPseudos refuses unknown, repeated or mixed request and response
// pseudo-header fields.
func checkPseudos(pf []hpack.HeaderField) error {
	var isRequest, isResponse bool
	for i, hf := range pf {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			isRequest = true
		case ":status":
			isResponse = true
		default:
			return fmt.Errorf("invalid pseudo-header %q", hf.Name)
		}
		for _, hf2 := range pf[:i] {
			if hf.Name == hf2.Name {
				return fmt.Errorf("duplicate pseudo-header %q", hf.Name)
			}
		}
	}
	if isRequest && isResponse {
		return errors.New("mix of request and response pseudo headers")
	}
	return nil
}
