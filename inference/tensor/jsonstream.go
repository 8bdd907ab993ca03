package tensor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

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
	d := &requestDecoder{s: newScanner(r, opts.BodyBytes), opts: opts}
	req, err := d.request()
	if err != nil {
		if errors.Is(err, errSyntax) && !strings.HasPrefix(err.Error(), "input ") {
			err = fmt.Errorf("request body is not a valid inference request: %w", err)
		}
		return nil, err
	}
	return req, nil
}

type requestDecoder struct {
	s    *scanner
	opts DecodeOptions
}

// object reads an object, calling field for each key with the scanner
// positioned at its value.
func (d *requestDecoder) object(what string, field func(key string) error) error {
	if err := d.s.expect('{', what); err != nil {
		return err
	}
	for first := true; ; first = false {
		ok, err := d.s.more('}', first)
		if err != nil || !ok {
			return err
		}
		key, err := d.s.stringValue(what + " key")
		if err != nil {
			return err
		}
		if err := d.s.expect(':', what); err != nil {
			return err
		}
		if err := field(key); err != nil {
			return err
		}
	}
}

func (d *requestDecoder) array(what string, each func() error) error {
	if err := d.s.expect('[', what); err != nil {
		return err
	}
	for first := true; ; first = false {
		ok, err := d.s.more(']', first)
		if err != nil || !ok {
			return err
		}
		if err := each(); err != nil {
			return err
		}
	}
}

func (d *requestDecoder) request() (*Request, error) {
	req := &Request{}
	seen := map[string]bool{}
	err := d.object("the request", func(key string) error {
		if seen[key] {
			return fmt.Errorf("request field %q is given twice: %w", key, ErrInvalid)
		}
		seen[key] = true
		switch key {
		case "id":
			id, err := d.s.stringValue("request id")
			req.ID = id
			return err
		case "inputs":
			return d.array("inputs", func() error {
				in, err := d.input()
				if err != nil && in.Name == "" {
					// Its data came before its name: name it by position.
					return fmt.Errorf("inputs[%d]: %w", len(req.Inputs), err)
				}
				if err == nil {
					req.Inputs = append(req.Inputs, in)
				}
				return err
			})
		case "outputs":
			return d.array("outputs", func() error {
				name, err := d.output()
				if err == nil {
					req.Outputs = append(req.Outputs, name)
				}
				return err
			})
		}
		return d.s.skip() // parameters, and fields of later versions of the protocol
	})
	if err != nil {
		return nil, err
	}
	if _, err := d.s.peek(); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("request body has data after the request: %w", ErrInvalid)
	}
	if !seen["inputs"] {
		return nil, fmt.Errorf("request has no inputs: %w", ErrInvalid)
	}
	return req, nil
}

// input decodes one input object. Its data is decoded straight into the
// typed slice when name, shape and datatype come first, as the protocol's
// clients write them; otherwise (a client that sorts keys) its scalars are
// kept in a flat copy, reserved at the body's size, until they are known.
func (d *requestDecoder) input() (runtime.Tensor, error) {
	var t runtime.Tensor
	var haveShape, haveType, haveData bool
	var flat []byte
	err := d.object("an input", func(key string) error {
		switch key {
		case "name":
			name, err := d.s.stringValue("input name")
			t.Name = name
			return err
		case "shape":
			shape, err := d.shape()
			if err != nil {
				return invalid(t.Name, "shape: %v", err)
			}
			t.Shape, haveShape = shape, true
			return nil
		case "datatype":
			dt, err := d.s.stringValue("datatype")
			if err != nil {
				return invalid(t.Name, "datatype: want a string")
			}
			t.Datatype, haveType = runtime.Datatype(dt), true
			return nil
		case "data":
			if haveData {
				return invalid(t.Name, "data is given twice")
			}
			haveData = true
			if haveShape && haveType {
				return d.data(&t, d.s)
			}
			if err := d.reserve(d.opts.BodyBytes); err != nil {
				return err
			}
			flat = append(flat, '[')
			_, err := walk(d.s, t.Name, func(i int, _ scalarKind, raw []byte) error {
				if i > 0 {
					flat = append(flat, ',')
				}
				flat = append(flat, raw...)
				return nil
			})
			flat = append(flat, ']')
			return err
		}
		return d.s.skip()
	})
	if err != nil {
		return t, err
	}
	switch {
	case !haveShape:
		return t, invalid(t.Name, "shape is missing")
	case !haveType:
		return t, invalid(t.Name, "datatype is missing")
	case !haveData:
		return t, invalid(t.Name, "data is missing")
	case flat != nil:
		if err := d.data(&t, newScanner(bytes.NewReader(flat), int64(len(flat)))); err != nil {
			return t, err
		}
	}
	return t, nil
}

// shape reads an array of integers.
func (d *requestDecoder) shape() ([]int64, error) {
	shape := []int64{}
	err := d.array("shape", func() error {
		k, raw, err := d.s.scalar()
		if err != nil {
			return err
		}
		v, err := strconv.ParseInt(unsafeString(raw), 10, 64)
		if k != kindNumber || err != nil {
			return fmt.Errorf("want an array of integers")
		}
		shape = append(shape, v)
		return nil
	})
	return shape, err
}

// data checks t's header, reserves and allocates its elements, and decodes
// them from s.
func (d *requestDecoder) data(t *runtime.Tensor, s *scanner) error {
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
	need := int64(n) * size
	if t.Datatype == runtime.Bytes {
		need += d.opts.BodyBytes // the strings' contents, at most the body
	}
	if err := d.reserve(need); err != nil {
		return err
	}
	t.Data, err = decodeElements(s, t.Name, t.Datatype, t.Shape, n)
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
	var name string
	err := d.object("a requested output", func(key string) error {
		if key != "name" {
			return d.s.skip()
		}
		n, err := d.s.stringValue("requested output name")
		name = n
		return err
	})
	return name, err
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

// decodeElements reads one JSON array (nested, rectangular) of exactly n
// scalars of type dt.
func decodeElements(s *scanner, name string, dt runtime.Datatype, shape []int64, n int) (any, error) {
	switch dt {
	case runtime.FP32:
		return decodeTyped(s, name, shape, n, func(k scalarKind, raw []byte) (float32, bool) {
			f, ok := floatOf(k, raw, 32)
			return float32(f), ok
		})
	case runtime.FP64:
		return decodeTyped(s, name, shape, n, func(k scalarKind, raw []byte) (float64, bool) { return floatOf(k, raw, 64) })
	case runtime.Int64:
		return decodeTyped(s, name, shape, n, intOf[int64](64))
	case runtime.Int32:
		return decodeTyped(s, name, shape, n, intOf[int32](32))
	case runtime.Int16:
		return decodeTyped(s, name, shape, n, intOf[int16](16))
	case runtime.Int8:
		return decodeTyped(s, name, shape, n, intOf[int8](8))
	case runtime.Uint64:
		return decodeTyped(s, name, shape, n, uintOf[uint64](64))
	case runtime.Uint32:
		return decodeTyped(s, name, shape, n, uintOf[uint32](32))
	case runtime.Uint16:
		return decodeTyped(s, name, shape, n, uintOf[uint16](16))
	case runtime.Uint8:
		return decodeTyped(s, name, shape, n, uintOf[uint8](8))
	case runtime.Bool:
		return decodeTyped(s, name, shape, n, func(k scalarKind, _ []byte) (bool, bool) {
			return k == kindTrue, k == kindTrue || k == kindFalse
		})
	case runtime.Bytes:
		return decodeTyped(s, name, shape, n, func(k scalarKind, raw []byte) ([]byte, bool) {
			if k != kindString {
				return nil, false
			}
			v, err := s.text(raw)
			return []byte(v), err == nil
		})
	}
	return nil, invalid(name, "unknown datatype %q", dt)
}

// floatOf reads a number; JSON has no NaN, so null stands for a missing
// value (NaN), which tree models route by their default branch.
func floatOf(k scalarKind, raw []byte, bits int) (float64, bool) {
	switch k {
	case kindNull:
		return math.NaN(), true
	case kindNumber:
		f, err := strconv.ParseFloat(unsafeString(raw), bits)
		return f, err == nil
	}
	return 0, false
}

func intOf[T int8 | int16 | int32 | int64](bits int) func(scalarKind, []byte) (T, bool) {
	return func(k scalarKind, raw []byte) (T, bool) {
		if k != kindNumber {
			return 0, false
		}
		i, err := strconv.ParseInt(unsafeString(raw), 10, bits)
		return T(i), err == nil
	}
}

func uintOf[T uint8 | uint16 | uint32 | uint64](bits int) func(scalarKind, []byte) (T, bool) {
	return func(k scalarKind, raw []byte) (T, bool) {
		if k != kindNumber {
			return 0, false
		}
		u, err := strconv.ParseUint(unsafeString(raw), 10, bits)
		return T(u), err == nil
	}
}

// decodeTyped fills a []T of n elements from one JSON array, stopping at
// the first element beyond n.
func decodeTyped[T any](s *scanner, name string, shape []int64, n int, conv func(scalarKind, []byte) (T, bool)) ([]T, error) {
	out := make([]T, n)
	count, err := walk(s, name, func(i int, k scalarKind, raw []byte) error {
		if i == n {
			return invalid(name, "shape %v needs %d elements, data holds more", shape, n)
		}
		v, ok := conv(k, raw)
		if !ok {
			return invalid(name, "element %d: %q is not a valid value for the datatype", i, raw)
		}
		out[i] = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	if count != n {
		return nil, invalid(name, "shape %v needs %d elements, data holds %d", shape, n, count)
	}
	return out, nil
}

// walk reads one JSON array nested to any depth and calls visit for each
// scalar in order; it returns how many there were. Nesting is allowed
// (row-major either way) but must be rectangular: scalars only at the
// deepest level and every array at one depth of the same length, so that
// ragged rows are refused even when their total happens to fit.
func walk(s *scanner, name string, visit func(i int, k scalarKind, raw []byte) error) (int, error) {
	if c, err := s.peek(); err != nil || c != '[' {
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		return 0, invalid(name, "data: want a JSON array")
	}
	_, _ = s.r.ReadByte()
	s.off++
	count := 0
	counts := []int{0} // elements so far of each open array
	lengths := []int{-1}
	leaf := -1 // the depth at which scalars sit, once seen
	for len(counts) > 0 {
		depth := len(counts)
		ok, err := s.more(']', counts[depth-1] == 0)
		if err != nil {
			return 0, dataErr(name, err)
		}
		if !ok {
			c := counts[depth-1]
			switch l := lengths[depth-1]; {
			case l < 0:
				lengths[depth-1] = c
			case l != c:
				return 0, invalid(name, "data: ragged rows: arrays at depth %d hold %d and %d elements", depth, l, c)
			}
			counts = counts[:depth-1]
			continue
		}
		counts[depth-1]++
		c, err := s.peek()
		if err != nil {
			return 0, dataErr(name, s.readErr(err))
		}
		switch c {
		case '[':
			if depth >= maxDepth {
				return 0, invalid(name, "data: nested deeper than %d levels", maxDepth)
			}
			if leaf >= 0 && depth >= leaf {
				return 0, invalid(name, "data: ragged rows: an array at depth %d where values are expected", depth+1)
			}
			_, _ = s.r.ReadByte()
			s.off++
			counts = append(counts, 0)
			if len(lengths) < len(counts) {
				lengths = append(lengths, -1)
			}
			continue
		case '{':
			return 0, invalid(name, "data: element %d: want a value, not an object", count)
		}
		k, raw, err := s.scalar()
		if err != nil {
			return 0, dataErr(name, err)
		}
		if leaf < 0 {
			leaf = depth
		} else if leaf != depth {
			return 0, invalid(name, "data: ragged rows: values at depths %d and %d", leaf, depth)
		}
		if err := visit(count, k, raw); err != nil {
			return 0, err
		}
		count++
	}
	return count, nil
}

// dataErr names the input in a syntax error; read errors pass unchanged.
func dataErr(name string, err error) error {
	if errors.Is(err, errSyntax) {
		return fmt.Errorf("input %q: data: %w", name, err)
	}
	return err
}
