// Package tensor converts tensors between the Open Inference Protocol's wire
// forms (protobuf typed contents, raw little-endian contents, REST JSON) and
// runtime.Tensor. Every decoder checks that the data matches the declared
// datatype and shape, and names the tensor in its errors.
package tensor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/runtime"
)

// ErrInvalid marks a tensor the caller got wrong. It wraps
// runtime.ErrInvalidInput so one errors.Is check covers both.
var ErrInvalid = fmt.Errorf("%w", runtime.ErrInvalidInput)

// MaxElements bounds a tensor's declared element count, so that a shape
// cannot make the server allocate without the bytes to back it.
const MaxElements = 1 << 28

// littleEndian is the host's byte order; raw contents are little-endian, so
// on such hosts numeric raw contents are used in place without copying.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

func invalid(name, format string, args ...any) error {
	return fmt.Errorf("input %q: %s: %w", name, fmt.Sprintf(format, args...), ErrInvalid)
}

// Elements checks shape (no negative dimensions, no overflow, at most
// MaxElements) and returns its element count.
func Elements(name string, shape []int64) (int, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, invalid(name, "shape %v has a negative dimension", shape)
		}
		if d != 0 && n > MaxElements/d {
			return 0, invalid(name, "shape %v holds more than %d elements", shape, MaxElements)
		}
		n *= d
	}
	return int(n), nil
}

// DecodeInputs decodes every input of req, from raw_input_contents when the
// request carries them and from typed contents otherwise.
func DecodeInputs(req *pb.ModelInferRequest) ([]runtime.Tensor, error) {
	return DecodeInputsTo(nil, req)
}

// DecodeInputsTo is DecodeInputs into dst's storage when it has room.
func DecodeInputsTo(dst []runtime.Tensor, req *pb.ModelInferRequest) ([]runtime.Tensor, error) {
	raw := req.GetRawInputContents()
	if len(raw) > 0 && len(raw) != len(req.GetInputs()) {
		return nil, fmt.Errorf("raw_input_contents has %d entries for %d inputs: %w", len(raw), len(req.GetInputs()), ErrInvalid)
	}
	out := dst[:0]
	if n := len(req.GetInputs()); cap(out) >= n {
		out = out[:n]
	} else {
		out = make([]runtime.Tensor, n)
	}
	for i, in := range req.GetInputs() {
		var err error
		if len(raw) > 0 {
			if in.GetContents() != nil {
				return nil, invalid(in.GetName(), "has both contents and raw_input_contents")
			}
			out[i], err = DecodeRaw(in.GetName(), runtime.Datatype(in.GetDatatype()), in.GetShape(), raw[i])
		} else {
			out[i], err = DecodeContents(in)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DecodeContents decodes an input's typed contents.
func DecodeContents(in *pb.ModelInferRequest_InferInputTensor) (runtime.Tensor, error) {
	name, dt, shape := in.GetName(), runtime.Datatype(in.GetDatatype()), in.GetShape()
	n, err := Elements(name, shape)
	if err != nil {
		return runtime.Tensor{}, err
	}
	c := in.GetContents()
	t := runtime.Tensor{Name: name, Datatype: dt, Shape: shape}
	var got int
	switch dt {
	case runtime.FP32:
		d := c.GetFp32Contents()
		t.Data, got = d, len(d)
	case runtime.FP64:
		d := c.GetFp64Contents()
		t.Data, got = d, len(d)
	case runtime.Int64:
		d := c.GetInt64Contents()
		t.Data, got = d, len(d)
	case runtime.Int32:
		d := c.GetIntContents()
		t.Data, got = d, len(d)
	case runtime.Uint64:
		d := c.GetUint64Contents()
		t.Data, got = d, len(d)
	case runtime.Uint32:
		d := c.GetUintContents()
		t.Data, got = d, len(d)
	case runtime.Bool:
		d := c.GetBoolContents()
		t.Data, got = d, len(d)
	case runtime.Bytes:
		d := c.GetBytesContents()
		t.Data, got = d, len(d)
	case runtime.Int8:
		t.Data, err = narrow[int8](name, c.GetIntContents(), math.MinInt8, math.MaxInt8)
		got = len(c.GetIntContents())
	case runtime.Int16:
		t.Data, err = narrow[int16](name, c.GetIntContents(), math.MinInt16, math.MaxInt16)
		got = len(c.GetIntContents())
	case runtime.Uint8:
		t.Data, err = narrow[uint8](name, c.GetUintContents(), 0, math.MaxUint8)
		got = len(c.GetUintContents())
	case runtime.Uint16:
		t.Data, err = narrow[uint16](name, c.GetUintContents(), 0, math.MaxUint16)
		got = len(c.GetUintContents())
	case runtime.FP16:
		return runtime.Tensor{}, invalid(name, "FP16 has no typed contents; send it in raw_input_contents")
	default:
		return runtime.Tensor{}, invalid(name, "unknown datatype %q", dt)
	}
	if err != nil {
		return runtime.Tensor{}, err
	}
	if got != n {
		return runtime.Tensor{}, invalid(name, "shape %v needs %d elements, contents hold %d", shape, n, got)
	}
	return t, nil
}

func narrow[T int8 | int16 | uint8 | uint16, S int32 | uint32](name string, in []S, lo, hi int64) ([]T, error) {
	out := make([]T, len(in))
	for i, v := range in {
		if int64(v) < lo || int64(v) > hi {
			return nil, invalid(name, "element %d: %d is out of range", i, v)
		}
		out[i] = T(v)
	}
	return out, nil
}

// Size is the bytes one element of dt takes in raw form; 0 for BYTES,
// whose elements are length-prefixed.
func Size(dt runtime.Datatype) int {
	switch dt {
	case runtime.Bool, runtime.Int8, runtime.Uint8:
		return 1
	case runtime.Int16, runtime.Uint16, runtime.FP16:
		return 2
	case runtime.Int32, runtime.Uint32, runtime.FP32:
		return 4
	case runtime.Int64, runtime.Uint64, runtime.FP64:
		return 8
	}
	return 0
}

// DecodeRaw decodes raw contents: little-endian elements, or for BYTES each
// element preceded by its 4-byte little-endian length, as Triton sends them.
// Numeric data may alias raw, which the caller must not modify afterwards.
func DecodeRaw(name string, dt runtime.Datatype, shape []int64, raw []byte) (runtime.Tensor, error) {
	n, err := Elements(name, shape)
	if err != nil {
		return runtime.Tensor{}, err
	}
	t := runtime.Tensor{Name: name, Datatype: dt, Shape: shape}
	if dt == runtime.Bytes {
		t.Data, err = decodeRawBytes(name, n, raw)
		return t, err
	}
	size := Size(dt)
	if size == 0 {
		return runtime.Tensor{}, invalid(name, "unknown datatype %q", dt)
	}
	if len(raw) != n*size {
		return runtime.Tensor{}, invalid(name, "shape %v needs %d bytes of %s, raw contents hold %d", shape, n*size, dt, len(raw))
	}
	switch dt {
	case runtime.FP32:
		t.Data = rawSlice[float32](raw, n, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) })
	case runtime.FP64:
		t.Data = rawSlice[float64](raw, n, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) })
	case runtime.Int64:
		t.Data = rawSlice[int64](raw, n, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) })
	case runtime.Uint64:
		t.Data = rawSlice[uint64](raw, n, binary.LittleEndian.Uint64)
	case runtime.Int32:
		t.Data = rawSlice[int32](raw, n, func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) })
	case runtime.Uint32:
		t.Data = rawSlice[uint32](raw, n, binary.LittleEndian.Uint32)
	case runtime.Int16:
		t.Data = rawSlice[int16](raw, n, func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) })
	case runtime.Uint16, runtime.FP16:
		// FP16 stays as its bit patterns; no runtime evaluates it.
		t.Data = rawSlice[uint16](raw, n, binary.LittleEndian.Uint16)
	case runtime.Int8:
		t.Data = rawSlice[int8](raw, n, func(b []byte) int8 { return int8(b[0]) })
	case runtime.Uint8:
		t.Data = raw[:n:n]
	case runtime.Bool:
		d := make([]bool, n)
		for i, b := range raw {
			if b > 1 {
				return runtime.Tensor{}, invalid(name, "element %d: BOOL byte %d is neither 0 nor 1", i, b)
			}
			d[i] = b == 1
		}
		t.Data = d
	}
	return t, nil
}

// rawSlice views raw as n elements of T without copying when the host is
// little-endian and raw is aligned for T; otherwise it decodes a copy.
func rawSlice[T any](raw []byte, n int, get func([]byte) T) []T {
	var zero T
	size := int(unsafe.Sizeof(zero))
	if n == 0 {
		return []T{}
	}
	if littleEndian && uintptr(unsafe.Pointer(&raw[0]))%unsafe.Alignof(zero) == 0 {
		return unsafe.Slice((*T)(unsafe.Pointer(&raw[0])), n)
	}
	out := make([]T, n)
	for i := range out {
		out[i] = get(raw[i*size : (i+1)*size])
	}
	return out
}

func decodeRawBytes(name string, n int, raw []byte) ([][]byte, error) {
	// Every element needs at least its 4-byte length, which bounds n by
	// the bytes actually received before anything is allocated.
	if n > len(raw)/4 {
		return nil, invalid(name, "raw contents of %d bytes cannot hold %d BYTES elements", len(raw), n)
	}
	out := make([][]byte, n)
	for i := range out {
		if len(raw) < 4 {
			return nil, invalid(name, "element %d: raw contents end before its 4-byte length", i)
		}
		l := binary.LittleEndian.Uint32(raw)
		raw = raw[4:]
		if uint64(l) > uint64(len(raw)) {
			return nil, invalid(name, "element %d: length %d runs past the end of the raw contents", i, l)
		}
		out[i], raw = raw[:l:l], raw[l:]
	}
	if len(raw) != 0 {
		return nil, invalid(name, "%d bytes left after %d BYTES elements", len(raw), n)
	}
	return out, nil
}

// errOutput reports a model output the server cannot encode.
var errOutput = errors.New("cannot encode output")
