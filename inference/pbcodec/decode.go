package pbcodec

import (
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/maestro-ml/maestro/inference/pb"
)

// DecodeRequest decodes b into m when b holds only what the fast decoder
// takes: the model name, version and id, inputs with a name, datatype,
// packed shape and packed typed contents (or none), requested outputs by
// name, and raw input contents. It reuses the storage m already holds, as
// a pooled message does. It reports false, with m in an unspecified state,
// for anything else (parameters, unknown or unpacked fields, malformed
// input); the caller then resets m and decodes b with protobuf.
func DecodeRequest(b []byte, m *pb.ModelInferRequest) bool {
	name, version, id := m.ModelName, m.ModelVersion, m.Id
	inputs, outputs, raw := m.Inputs[:0], m.Outputs[:0], m.RawInputContents[:0]
	m.Reset()
	for len(b) > 0 {
		num, v, rest, ok := field(b)
		if !ok {
			return false
		}
		b = rest
		switch num {
		case 1:
			m.ModelName, ok = str(name, v)
		case 2:
			m.ModelVersion, ok = str(version, v)
		case 3:
			m.Id, ok = str(id, v)
		case 5:
			var t *pb.ModelInferRequest_InferInputTensor
			inputs, t = grow(inputs)
			ok = decodeInput(v, t)
		case 6:
			var t *pb.ModelInferRequest_InferRequestedOutputTensor
			outputs, t = grow(outputs)
			ok = decodeRequested(v, t)
		case 7:
			raw = appendBytes(raw, v)
		default:
			return false // parameters or an unknown field: protobuf's
		}
		if !ok {
			return false
		}
	}
	m.Inputs, m.Outputs, m.RawInputContents = inputs, outputs, raw
	if len(m.Inputs) == 0 {
		m.Inputs = nil // as protobuf leaves a field it did not see
	}
	if len(m.Outputs) == 0 {
		m.Outputs = nil
	}
	if len(m.RawInputContents) == 0 {
		m.RawInputContents = nil
	}
	return true
}

// grow appends an element to s, reusing the message a pooled slice held
// at that index; the caller resets it.
func grow[T any](s []*T) ([]*T, *T) {
	if len(s) < cap(s) {
		s = s[:len(s)+1]
		if t := s[len(s)-1]; t != nil {
			return s, t
		}
		s[len(s)-1] = new(T)
		return s, s[len(s)-1]
	}
	t := new(T)
	return append(s, t), t
}

// str is v as a string: old itself when it holds the same text, as it does
// for a pooled message's model and input names, so that no string is
// allocated. Protobuf refuses strings that are not UTF-8.
func str(old string, v []byte) (string, bool) {
	if old == string(v) {
		return old, true
	}
	if !utf8.Valid(v) {
		return "", false
	}
	return string(v), true
}

// appendBytes appends a copy of v to s, into the storage a pooled slice
// held at that index when it is large enough. A copy, because gRPC reuses
// the message's buffer once decoding returns.
func appendBytes(s [][]byte, v []byte) [][]byte {
	if len(s) < cap(s) {
		s = s[:len(s)+1]
		s[len(s)-1] = append(s[len(s)-1][:0], v...)
		return s
	}
	return append(s, append(make([]byte, 0, len(v)), v...))
}

func decodeInput(b []byte, t *pb.ModelInferRequest_InferInputTensor) bool {
	name, dt, shape, c := t.Name, t.Datatype, t.Shape[:0], t.Contents
	t.Reset()
	contents := false
	for len(b) > 0 {
		num, v, rest, ok := field(b)
		if !ok {
			return false
		}
		b = rest
		switch num {
		case 1:
			t.Name, ok = str(name, v)
		case 2:
			t.Datatype, ok = str(dt, v)
		case 3:
			shape, ok = appendVarints(shape, v, func(x uint64) int64 { return int64(x) })
		case 5:
			// A second occurrence merges into the first, as protobuf
			// merges a repeated singular message.
			if !contents {
				if c == nil {
					c = new(pb.InferTensorContents)
				} else {
					resetContents(c)
				}
				contents = true
			}
			ok = decodeContents(v, c)
		default:
			return false // parameters or an unknown field: protobuf's
		}
		if !ok {
			return false
		}
	}
	if len(shape) > 0 {
		t.Shape = shape
	}
	if contents {
		t.Contents = c
	}
	return true
}

func decodeRequested(b []byte, t *pb.ModelInferRequest_InferRequestedOutputTensor) bool {
	name := t.Name
	t.Reset()
	for len(b) > 0 {
		num, v, rest, ok := field(b)
		if !ok || num != 1 {
			return false
		}
		b = rest
		if t.Name, ok = str(name, v); !ok {
			return false
		}
	}
	return true
}

// resetContents empties c, keeping its slices' storage.
func resetContents(c *pb.InferTensorContents) {
	bools, ints, int64s, uints, uint64s := c.BoolContents[:0], c.IntContents[:0], c.Int64Contents[:0], c.UintContents[:0], c.Uint64Contents[:0]
	fp32s, fp64s, bytes := c.Fp32Contents[:0], c.Fp64Contents[:0], c.BytesContents[:0]
	c.Reset()
	c.BoolContents, c.IntContents, c.Int64Contents, c.UintContents, c.Uint64Contents = bools, ints, int64s, uints, uint64s
	c.Fp32Contents, c.Fp64Contents, c.BytesContents = fp32s, fp64s, bytes
}

// decodeContents appends b's packed typed contents to c; empty slices are
// left nil at the end, as protobuf leaves them.
func decodeContents(b []byte, c *pb.InferTensorContents) bool {
	for len(b) > 0 {
		num, v, rest, ok := field(b)
		if !ok {
			return false
		}
		b = rest
		switch num {
		case 1:
			c.BoolContents, ok = appendVarints(c.BoolContents, v, func(x uint64) bool { return x != 0 })
		case 2:
			c.IntContents, ok = appendVarints(c.IntContents, v, func(x uint64) int32 { return int32(x) })
		case 3:
			c.Int64Contents, ok = appendVarints(c.Int64Contents, v, func(x uint64) int64 { return int64(x) })
		case 4:
			c.UintContents, ok = appendVarints(c.UintContents, v, func(x uint64) uint32 { return uint32(x) })
		case 5:
			c.Uint64Contents, ok = appendVarints(c.Uint64Contents, v, func(x uint64) uint64 { return x })
		case 6:
			c.Fp32Contents, ok = appendFixed32(c.Fp32Contents, v)
		case 7:
			c.Fp64Contents, ok = appendFixed64(c.Fp64Contents, v)
		case 8:
			c.BytesContents = appendBytes(c.BytesContents, v)
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	nilIfEmpty(&c.BoolContents)
	nilIfEmpty(&c.IntContents)
	nilIfEmpty(&c.Int64Contents)
	nilIfEmpty(&c.UintContents)
	nilIfEmpty(&c.Uint64Contents)
	nilIfEmpty(&c.Fp32Contents)
	nilIfEmpty(&c.Fp64Contents)
	nilIfEmpty(&c.BytesContents)
	return true
}

// nilIfEmpty drops an empty slice's storage from the message only; a
// pooled message keeps nothing it did not use, which is what protobuf's
// own decoding leaves, so that both decoders give equal messages.
func nilIfEmpty[T any](s *[]T) {
	if len(*s) == 0 {
		*s = nil
	}
}

// appendVarints appends the packed varints of b, converted by conv.
func appendVarints[T any](s []T, b []byte, conv func(uint64) T) ([]T, bool) {
	for len(b) > 0 {
		x, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return s, false
		}
		s = append(s, conv(x))
		b = b[n:]
	}
	return s, true
}

func appendFixed32(s []float32, b []byte) ([]float32, bool) {
	if len(b)%4 != 0 {
		return s, false
	}
	s = growCap(s, len(b)/4)
	for ; len(b) > 0; b = b[4:] {
		s = append(s, math.Float32frombits(uint32(b[0])|uint32(b[1])<<8|uint32(b[2])<<16|uint32(b[3])<<24))
	}
	return s, true
}

func appendFixed64(s []float64, b []byte) ([]float64, bool) {
	if len(b)%8 != 0 {
		return s, false
	}
	s = growCap(s, len(b)/8)
	for ; len(b) > 0; b = b[8:] {
		x, _ := protowire.ConsumeFixed64(b)
		s = append(s, math.Float64frombits(x))
	}
	return s, true
}

// growCap makes room for n more elements in one allocation.
func growCap[T any](s []T, n int) []T {
	if cap(s)-len(s) >= n {
		return s
	}
	out := make([]T, len(s), len(s)+n)
	copy(out, s)
	return out
}

// field splits the next field off b. The fast decoder takes only
// length-delimited fields (packed shapes and contents included): any other
// wire type, or a malformed field, sends the message to protobuf.
func field(b []byte) (num protowire.Number, v, rest []byte, ok bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || typ != protowire.BytesType {
		return 0, nil, nil, false
	}
	v, m := protowire.ConsumeBytes(b[n:])
	if m < 0 {
		return 0, nil, nil, false
	}
	return num, v, b[n+m:], true
}
