package tensor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/maestro-ml/maestro/inference/runtime"
)

// Request is a decoded REST inference request: its inputs as typed
// tensors and the names of the outputs asked for, in order.
type Request struct {
	ID      string
	Inputs  []runtime.Tensor
	Outputs []string
}

// DecodeOptions bounds what DecodeJSONRequest may allocate.
type DecodeOptions struct {
	// Check is called with each input's name, datatype and shape before its
	// data is read, so that a shape the model refuses costs no allocation.
	// Its error stops decoding and is returned as is.
	Check func(name string, dt runtime.Datatype, shape []int64) error
	// Reserve is called with the bytes about to be allocated for an input's
	// data, before they are; its error stops decoding and is returned as is.
	Reserve func(bytes int64) error
	// BodyBytes bounds the body's length (its Content-Length, or the largest
	// body accepted). Every element takes at least one byte, so no shape may
	// claim more elements than this.
	BodyBytes int64
}

// DecodeJSONRequest decodes a REST inference request body as a stream of
// JSON tokens: each input's shape and datatype are checked (opts.Check)
// and its typed data reserved (opts.Reserve) and allocated before its
// "data" is read, and decoding stops at the first element beyond the
// shape. So memory follows the model's declared shape, not what a client
// sends. "data" may be flat or nested; nested rows must all have the same
// length. Request and tensor parameters are skipped.
//
// # Errors
//
// Malformed JSON, a missing or extra element, ragged rows or a value that
// does not fit the datatype are ErrInvalid naming the input. Errors of
// opts.Check and opts.Reserve are returned as they are; an error reading r
// may surface as ErrInvalid, so a caller that cares wraps r to see it.
func DecodeJSONRequest(r io.Reader, opts DecodeOptions) (*Request, error) {
	d := &requestDecoder{dec: json.NewDecoder(r), opts: opts}
	d.dec.UseNumber()
	req, err := d.request()
	if err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("request body is not a valid inference request: %v: %w", err, ErrInvalid)
		}
		return nil, err
	}
	return req, nil
}

type requestDecoder struct {
	dec  *json.Decoder
	opts DecodeOptions
}

func (d *requestDecoder) request() (*Request, error) {
	if err := d.delim('{', "the request"); err != nil {
		return nil, err
	}
	req := &Request{}
	seen := map[string]bool{}
	for d.dec.More() {
		key, err := d.key()
		if err != nil {
			return nil, err
		}
		if seen[key] {
			return nil, fmt.Errorf("request field %q is given twice: %w", key, ErrInvalid)
		}
		seen[key] = true
		switch key {
		case "id":
			if err := d.dec.Decode(&req.ID); err != nil {
				return nil, fmt.Errorf("request id: %v: %w", err, ErrInvalid)
			}
		case "inputs":
			if err := d.array("inputs", func() error {
				in, err := d.input()
				if err == nil {
					req.Inputs = append(req.Inputs, in)
				}
				return err
			}); err != nil {
				return nil, err
			}
		case "outputs":
			if err := d.array("outputs", func() error {
				name, err := d.output()
				if err == nil {
					req.Outputs = append(req.Outputs, name)
				}
				return err
			}); err != nil {
				return nil, err
			}
		default: // parameters, and fields of later versions of the protocol
			if err := d.skip(); err != nil {
				return nil, err
			}
		}
	}
	if err := d.delim('}', "the request"); err != nil {
		return nil, err
	}
	if _, err := d.dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("request body has data after the request: %w", ErrInvalid)
	}
	if !seen["inputs"] {
		return nil, fmt.Errorf("request has no inputs: %w", ErrInvalid)
	}
	return req, nil
}

// input decodes one input object. Its data is decoded straight into the
// typed slice when name, shape and datatype come first, as every
// protocol client writes them; otherwise the raw data is kept (reserved
// at the body's size) until they are known.
func (d *requestDecoder) input() (runtime.Tensor, error) {
	var t runtime.Tensor
	if err := d.delim('{', "an input"); err != nil {
		return t, err
	}
	var haveShape, haveType, haveData bool
	var raw json.RawMessage
	for d.dec.More() {
		key, err := d.key()
		if err != nil {
			return t, err
		}
		switch key {
		case "name":
			if err := d.dec.Decode(&t.Name); err != nil {
				return t, fmt.Errorf("input name: %v: %w", err, ErrInvalid)
			}
		case "shape":
			if err := d.dec.Decode(&t.Shape); err != nil {
				return t, invalid(t.Name, "shape: want an array of integers")
			}
			haveShape = true
		case "datatype":
			var s string
			if err := d.dec.Decode(&s); err != nil {
				return t, invalid(t.Name, "datatype: want a string")
			}
			t.Datatype, haveType = runtime.Datatype(s), true
		case "data":
			if haveData {
				return t, invalid(t.Name, "data is given twice")
			}
			haveData = true
			if haveShape && haveType {
				if err := d.data(&t, d.dec); err != nil {
					return t, err
				}
				continue
			}
			if err := d.reserve(d.opts.BodyBytes); err != nil {
				return t, err
			}
			if err := d.dec.Decode(&raw); err != nil {
				return t, invalid(t.Name, "data: %v", err)
			}
		default:
			if err := d.skip(); err != nil {
				return t, err
			}
		}
	}
	if err := d.delim('}', "an input"); err != nil {
		return t, err
	}
	switch {
	case !haveShape:
		return t, invalid(t.Name, "shape is missing")
	case !haveType:
		return t, invalid(t.Name, "datatype is missing")
	case !haveData:
		return t, invalid(t.Name, "data is missing")
	case raw != nil:
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := d.data(&t, dec); err != nil {
			return t, err
		}
	}
	return t, nil
}

// data checks t's header, reserves and allocates its elements, and decodes
// them from dec.
func (d *requestDecoder) data(t *runtime.Tensor, dec *json.Decoder) error {
	n, err := Elements(t.Name, t.Shape)
	if err != nil {
		return err
	}
	if d.opts.Check != nil {
		if err := d.opts.Check(t.Name, t.Datatype, t.Shape); err != nil {
			return err
		}
	}
	if d.opts.BodyBytes > 0 && int64(n) > d.opts.BodyBytes {
		return invalid(t.Name, "shape %v needs %d elements, more than the %d bytes of the body can hold", t.Shape, n, d.opts.BodyBytes)
	}
	size, ok := elementBytes(t.Datatype)
	if !ok {
		if t.Datatype == runtime.FP16 {
			return invalid(t.Name, "FP16 cannot be sent as JSON")
		}
		return invalid(t.Name, "unknown datatype %q", t.Datatype)
	}
	if err := d.reserve(int64(n) * size); err != nil {
		return err
	}
	t.Data, err = decodeElements(dec, t.Name, t.Datatype, t.Shape, n)
	return err
}

func (d *requestDecoder) reserve(n int64) error {
	if d.opts.Reserve == nil {
		return nil
	}
	return d.opts.Reserve(n)
}

// output decodes one requested output and returns its name.
func (d *requestDecoder) output() (string, error) {
	if err := d.delim('{', "a requested output"); err != nil {
		return "", err
	}
	var name string
	for d.dec.More() {
		key, err := d.key()
		if err != nil {
			return "", err
		}
		if key != "name" {
			if err := d.skip(); err != nil {
				return "", err
			}
			continue
		}
		if err := d.dec.Decode(&name); err != nil {
			return "", fmt.Errorf("requested output name: %v: %w", err, ErrInvalid)
		}
	}
	return name, d.delim('}', "a requested output")
}

func (d *requestDecoder) array(what string, each func() error) error {
	if err := d.delim('[', what); err != nil {
		return err
	}
	for d.dec.More() {
		if err := each(); err != nil {
			return err
		}
	}
	return d.delim(']', what)
}

func (d *requestDecoder) key() (string, error) {
	tok, err := d.dec.Token()
	if err != nil {
		return "", err
	}
	k, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("request body: want an object key, got %v: %w", tok, ErrInvalid)
	}
	return k, nil
}

func (d *requestDecoder) delim(want json.Delim, what string) error {
	tok, err := d.dec.Token()
	if err != nil {
		return err
	}
	if got, ok := tok.(json.Delim); !ok || got != want {
		kind := map[json.Delim]string{'{': "an object", '[': "an array", '}': "the end of an object", ']': "the end of an array"}[want]
		return fmt.Errorf("request body: %s: want %s, got %v: %w", what, kind, tok, ErrInvalid)
	}
	return nil
}

// skip consumes one value token by token, keeping nothing of it.
func (d *requestDecoder) skip() error {
	depth := 0
	for {
		tok, err := d.dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// elementBytes is what one element of dt takes in memory once decoded.
func elementBytes(dt runtime.Datatype) (int64, bool) {
	switch dt {
	case runtime.FP64, runtime.Int64, runtime.Uint64:
		return 8, true
	case runtime.FP32, runtime.Int32, runtime.Uint32:
		return 4, true
	case runtime.Int16, runtime.Uint16:
		return 2, true
	case runtime.Int8, runtime.Uint8, runtime.Bool:
		return 1, true
	case runtime.Bytes:
		return 24, true // a slice header; the bytes themselves come from the body
	}
	return 0, false
}

// decodeElements reads one JSON array (nested to any depth) of exactly n
// scalars of type dt from dec.
func decodeElements(dec *json.Decoder, name string, dt runtime.Datatype, shape []int64, n int) (any, error) {
	switch dt {
	case runtime.FP32:
		return decodeTyped(dec, name, shape, n, func(tok json.Token) (float32, bool) {
			f, ok := floatOf(tok, 32)
			return float32(f), ok
		})
	case runtime.FP64:
		return decodeTyped(dec, name, shape, n, func(tok json.Token) (float64, bool) { return floatOf(tok, 64) })
	case runtime.Int64:
		return decodeTyped(dec, name, shape, n, intOf[int64](64))
	case runtime.Int32:
		return decodeTyped(dec, name, shape, n, intOf[int32](32))
	case runtime.Int16:
		return decodeTyped(dec, name, shape, n, intOf[int16](16))
	case runtime.Int8:
		return decodeTyped(dec, name, shape, n, intOf[int8](8))
	case runtime.Uint64:
		return decodeTyped(dec, name, shape, n, uintOf[uint64](64))
	case runtime.Uint32:
		return decodeTyped(dec, name, shape, n, uintOf[uint32](32))
	case runtime.Uint16:
		return decodeTyped(dec, name, shape, n, uintOf[uint16](16))
	case runtime.Uint8:
		return decodeTyped(dec, name, shape, n, uintOf[uint8](8))
	case runtime.Bool:
		return decodeTyped(dec, name, shape, n, func(tok json.Token) (bool, bool) { b, ok := tok.(bool); return b, ok })
	case runtime.Bytes:
		return decodeTyped(dec, name, shape, n, func(tok json.Token) ([]byte, bool) {
			s, ok := tok.(string)
			return []byte(s), ok
		})
	}
	return nil, invalid(name, "unknown datatype %q", dt)
}

// floatOf reads a number; JSON has no NaN, so null stands for a missing
// value (NaN), which tree models route by their default branch.
func floatOf(tok json.Token, bits int) (float64, bool) {
	switch v := tok.(type) {
	case nil:
		return math.NaN(), true
	case json.Number:
		f, err := strconv.ParseFloat(string(v), bits)
		return f, err == nil
	}
	return 0, false
}

func intOf[T int8 | int16 | int32 | int64](bits int) func(json.Token) (T, bool) {
	return func(tok json.Token) (T, bool) {
		v, ok := tok.(json.Number)
		if !ok {
			return 0, false
		}
		i, err := strconv.ParseInt(string(v), 10, bits)
		return T(i), err == nil
	}
}

func uintOf[T uint8 | uint16 | uint32 | uint64](bits int) func(json.Token) (T, bool) {
	return func(tok json.Token) (T, bool) {
		v, ok := tok.(json.Number)
		if !ok {
			return 0, false
		}
		u, err := strconv.ParseUint(string(v), 10, bits)
		return T(u), err == nil
	}
}

// decodeTyped fills a []T of n elements from one JSON array. Nesting is
// allowed (row-major either way) but must be rectangular: scalars only at
// the deepest level and every array at one depth of the same length, so
// that ragged rows are refused even when their total happens to fit.
func decodeTyped[T any](dec *json.Decoder, name string, shape []int64, n int, conv func(json.Token) (T, bool)) ([]T, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, invalid(name, "data: %v", err)
	}
	if tok != json.Delim('[') {
		return nil, invalid(name, "data: want a JSON array")
	}
	out := make([]T, n)
	count := 0
	counts := []int{0} // elements so far of each open array
	lengths := []int{-1}
	leaf := -1 // the depth at which scalars sit, once seen
	for len(counts) > 0 {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil, invalid(name, "data: unterminated array")
		}
		if err != nil {
			return nil, invalid(name, "data: %v", err)
		}
		depth := len(counts)
		switch tok {
		case json.Delim('['):
			if leaf >= 0 && depth >= leaf {
				return nil, invalid(name, "data: ragged rows: an array at depth %d where values are expected", depth+1)
			}
			counts[depth-1]++
			counts = append(counts, 0)
			if len(lengths) < len(counts) {
				lengths = append(lengths, -1)
			}
			continue
		case json.Delim(']'):
			c := counts[depth-1]
			switch l := lengths[depth-1]; {
			case l < 0:
				lengths[depth-1] = c
			case l != c:
				return nil, invalid(name, "data: ragged rows: arrays at depth %d hold %d and %d elements", depth, l, c)
			}
			counts = counts[:depth-1]
			continue
		case json.Delim('{'), json.Delim('}'):
			return nil, invalid(name, "data: element %d: want a value, not an object", count)
		}
		if leaf < 0 {
			leaf = depth
		} else if leaf != depth {
			return nil, invalid(name, "data: ragged rows: values at depths %d and %d", leaf, depth)
		}
		if count == n {
			return nil, invalid(name, "shape %v needs %d elements, data holds more", shape, n)
		}
		v, ok := conv(tok)
		if !ok {
			return nil, invalid(name, "element %d: %q is not a valid value for the datatype", count, tokenText(tok))
		}
		out[count] = v
		count++
		counts[depth-1]++
	}
	if count != n {
		return nil, invalid(name, "shape %v needs %d elements, data holds %d", shape, n, count)
	}
	return out, nil
}

// tokenText renders a scalar token as it appeared in the JSON.
func tokenText(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(v)
	case json.Number:
		return string(v)
	}
	return fmt.Sprint(tok)
}
