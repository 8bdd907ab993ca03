package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/runtime"
)

// EncodeContents puts t into a response output with typed contents.
func EncodeContents(t runtime.Tensor) (*pb.ModelInferResponse_InferOutputTensor, error) {
	// The output and its contents in one allocation: this runs per output
	// of every typed response.
	pair := &struct {
		out pb.ModelInferResponse_InferOutputTensor
		c   pb.InferTensorContents
	}{}
	if err := EncodeContentsTo(t, &pair.out, &pair.c); err != nil {
		return nil, err
	}
	return &pair.out, nil
}

// EncodeContentsTo is EncodeContents into storage the caller provides
// (and may reuse once the response is sent): out and its contents c, both
// overwritten.
func EncodeContentsTo(t runtime.Tensor, out *pb.ModelInferResponse_InferOutputTensor, c *pb.InferTensorContents) error {
	out.Reset()
	c.Reset()
	out.Name, out.Datatype, out.Shape = t.Name, string(t.Datatype), t.Shape
	switch d := t.Data.(type) {
	case []float32:
		c.Fp32Contents = d
	case []float64:
		c.Fp64Contents = d
	case []int64:
		c.Int64Contents = d
	case []int32:
		c.IntContents = d
	case []int16:
		c.IntContents = widen[int32](d)
	case []int8:
		c.IntContents = widen[int32](d)
	case []uint64:
		c.Uint64Contents = d
	case []uint32:
		c.UintContents = d
	case []uint16:
		if t.Datatype == runtime.FP16 {
			return fmt.Errorf("output %q: FP16 travels only as raw contents: %w", t.Name, errOutput)
		}
		c.UintContents = widen[uint32](d)
	case []uint8:
		c.UintContents = widen[uint32](d)
	case []bool:
		c.BoolContents = d
	case [][]byte:
		c.BytesContents = d
	default:
		return fmt.Errorf("output %q: data of type %T: %w", t.Name, t.Data, errOutput)
	}
	out.Contents = c
	return nil
}

func widen[T int32 | uint32, S int8 | int16 | uint8 | uint16](in []S) []T {
	out := make([]T, len(in))
	for i, v := range in {
		out[i] = T(v)
	}
	return out
}

// EncodeRaw puts t into a response output whose data goes in raw form. The
// returned bytes may alias t's data.
func EncodeRaw(t runtime.Tensor) (*pb.ModelInferResponse_InferOutputTensor, []byte, error) {
	out := new(pb.ModelInferResponse_InferOutputTensor)
	raw, err := EncodeRawTo(t, out)
	if err != nil {
		return nil, nil, err
	}
	return out, raw, nil
}

// EncodeRawTo is EncodeRaw into an output the caller provides, which is
// overwritten.
func EncodeRawTo(t runtime.Tensor, out *pb.ModelInferResponse_InferOutputTensor) ([]byte, error) {
	out.Reset()
	out.Name, out.Datatype, out.Shape = t.Name, string(t.Datatype), t.Shape
	var raw []byte
	switch d := t.Data.(type) {
	case []float32:
		raw = rawBytes(d, func(b []byte, v float32) { binary.LittleEndian.PutUint32(b, math.Float32bits(v)) })
	case []float64:
		raw = rawBytes(d, func(b []byte, v float64) { binary.LittleEndian.PutUint64(b, math.Float64bits(v)) })
	case []int64:
		raw = rawBytes(d, func(b []byte, v int64) { binary.LittleEndian.PutUint64(b, uint64(v)) })
	case []uint64:
		raw = rawBytes(d, binary.LittleEndian.PutUint64)
	case []int32:
		raw = rawBytes(d, func(b []byte, v int32) { binary.LittleEndian.PutUint32(b, uint32(v)) })
	case []uint32:
		raw = rawBytes(d, binary.LittleEndian.PutUint32)
	case []int16:
		raw = rawBytes(d, func(b []byte, v int16) { binary.LittleEndian.PutUint16(b, uint16(v)) })
	case []uint16:
		raw = rawBytes(d, binary.LittleEndian.PutUint16)
	case []int8:
		raw = rawBytes(d, func(b []byte, v int8) { b[0] = byte(v) })
	case []uint8:
		raw = d
	case []bool:
		raw = make([]byte, len(d))
		for i, v := range d {
			if v {
				raw[i] = 1
			}
		}
	case [][]byte:
		n := 0
		for _, e := range d {
			n += 4 + len(e)
		}
		raw = make([]byte, 0, n)
		for _, e := range d {
			raw = binary.LittleEndian.AppendUint32(raw, uint32(len(e)))
			raw = append(raw, e...)
		}
	default:
		return nil, fmt.Errorf("output %q: data of type %T: %w", t.Name, t.Data, errOutput)
	}
	return raw, nil
}

// rawBytes views s as little-endian bytes without copying on little-endian
// hosts, and encodes a copy elsewhere.
func rawBytes[T any](s []T, put func([]byte, T)) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	size := int(unsafe.Sizeof(s[0]))
	if littleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*size)
	}
	out := make([]byte, len(s)*size)
	for i, v := range s {
		put(out[i*size:], v)
	}
	return out
}
