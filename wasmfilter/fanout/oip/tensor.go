// Package oip reads and writes the Open Inference Protocol (KServe v2)
// messages the fanout filter handles: REST/JSON bodies and gRPC
// ModelInferRequest/ModelInferResponse messages, the latter directly on the
// protobuf wire format (protowire) with the field numbers of
// grpc_predict_v2.proto, which keeps the wasm module small.
//
// Every decoder treats its input as untrusted: malformed input gives an
// error naming the offending field or tensor, never a panic (which would
// trap the VM), and no allocation exceeds what the input's size justifies.
package oip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// MaxElements bounds a tensor's element count, whatever its shape claims.
const MaxElements = 1 << 26

// ErrInvalid marks every decoding error; check with errors.Is.
var ErrInvalid = errors.New("invalid inference message")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Tensor is one input or output tensor. Numeric and BOOL elements are held
// as float64 in Values (row-major, BOOL as 0 or 1); BYTES elements in
// Bytes.
type Tensor struct {
	Name     string
	Datatype string
	Shape    []int64
	Values   []float64
	Bytes    [][]byte
}

// Len is the number of elements the tensor holds.
func (t *Tensor) Len() int {
	if t.Datatype == "BYTES" {
		return len(t.Bytes)
	}
	return len(t.Values)
}

// RowsWidth splits the tensor into rows along its first dimension: a
// scalar or a 1-D tensor of n elements is n rows of 1; [n, a, b] is n rows
// of a*b.
func (t *Tensor) RowsWidth() (rows, width int) {
	if len(t.Shape) <= 1 {
		return t.Len(), 1
	}
	rows = int(t.Shape[0])
	if rows == 0 {
		return 0, max(1, t.Len())
	}
	return rows, t.Len() / rows
}

// Param is a request or response parameter. Value is a string, bool,
// int64, uint64 or float64; the encoders also take a *string, encoded as
// the string it points to: a string boxed in an interface is an allocation
// of its own, where a pointer into a caller's array is none.
type Param struct {
	Key   string
	Value any
}

// stringValue is the string a parameter value holds, directly or through
// a *string.
func stringValue(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case *string:
		if x != nil {
			return *x, true
		}
	}
	return "", false
}

// elementSize is the byte size of one element in raw contents; 0 for
// BYTES (length-prefixed) and -1 for unknown datatypes.
func elementSize(dt string) int {
	switch dt {
	case "BOOL", "INT8", "UINT8":
		return 1
	case "INT16", "UINT16", "FP16", "BF16":
		return 2
	case "INT32", "UINT32", "FP32":
		return 4
	case "INT64", "UINT64", "FP64":
		return 8
	case "BYTES":
		return 0
	}
	return -1
}

// KnownDatatype reports whether dt is a protocol datatype.
func KnownDatatype(dt string) bool { return elementSize(dt) >= 0 }

// elements checks a shape and returns its element count.
func elements(name string, shape []int64) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, invalidf("tensor %q: negative dimension in shape %v", name, shape)
		}
		if d > 0 && n > MaxElements/int(min(d, MaxElements+1)) {
			return 0, invalidf("tensor %q: shape %v has more than %d elements", name, shape, MaxElements)
		}
		n *= int(d)
	}
	if n > MaxElements {
		return 0, invalidf("tensor %q: shape %v has more than %d elements", name, shape, MaxElements)
	}
	return n, nil
}

// decodeRaw turns little-endian raw contents into values.
func decodeRaw(t *Tensor, raw []byte) error {
	n, err := elements(t.Name, t.Shape)
	if err != nil {
		return err
	}
	size := elementSize(t.Datatype)
	if size == 0 {
		t.Bytes = make([][]byte, 0, min(n, len(raw)/4))
		for len(raw) > 0 {
			if len(raw) < 4 {
				return invalidf("tensor %q: truncated BYTES length prefix", t.Name)
			}
			l := binary.LittleEndian.Uint32(raw)
			if uint64(l) > uint64(len(raw)-4) {
				return invalidf("tensor %q: BYTES element of %d bytes overruns the raw contents", t.Name, l)
			}
			t.Bytes = append(t.Bytes, raw[4:4+l])
			raw = raw[4+l:]
		}
		if len(t.Bytes) != n {
			return invalidf("tensor %q: shape %v needs %d elements, raw contents hold %d", t.Name, t.Shape, n, len(t.Bytes))
		}
		return nil
	}
	if len(raw) != n*size {
		return invalidf("tensor %q: shape %v of %s needs %d raw bytes, got %d", t.Name, t.Shape, t.Datatype, n*size, len(raw))
	}
	le := binary.LittleEndian
	t.Values = make([]float64, n)
	for i := range t.Values {
		b := raw[i*size:]
		var v float64
		switch t.Datatype {
		case "BOOL":
			v = float64(min(b[0], 1))
		case "INT8":
			v = float64(int8(b[0]))
		case "UINT8":
			v = float64(b[0])
		case "INT16":
			v = float64(int16(le.Uint16(b)))
		case "UINT16":
			v = float64(le.Uint16(b))
		case "FP16":
			v = halfToFloat(le.Uint16(b))
		case "BF16":
			v = float64(math.Float32frombits(uint32(le.Uint16(b)) << 16))
		case "INT32":
			v = float64(int32(le.Uint32(b)))
		case "UINT32":
			v = float64(le.Uint32(b))
		case "FP32":
			v = float64(math.Float32frombits(le.Uint32(b)))
		case "INT64":
			v = float64(int64(le.Uint64(b)))
		case "UINT64":
			v = float64(le.Uint64(b))
		case "FP64":
			v = math.Float64frombits(le.Uint64(b))
		}
		t.Values[i] = v
	}
	return nil
}

// halfToFloat converts an IEEE 754 binary16 value.
func halfToFloat(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac != 0 {
			return math.NaN()
		}
		return sign * math.Inf(1)
	}
	return sign * math.Ldexp(1+frac/1024, exp-15)
}

// Find returns the tensor called name, or the first one when name is
// empty; nil when there is none.
func Find(ts []Tensor, name string) *Tensor {
	for i := range ts {
		if name == "" || ts[i].Name == name {
			return &ts[i]
		}
	}
	return nil
}
