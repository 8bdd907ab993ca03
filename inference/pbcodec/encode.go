package pbcodec

import (
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/maestro-ml/maestro/inference/pb"
)

// AppendResponse appends m's protobuf encoding to b: the bytes
// proto.Marshal would write, with the fields in number order (map entries,
// as in protobuf, in no particular order). It reports false when a string
// is not valid UTF-8, which protobuf refuses to encode.
func AppendResponse(b []byte, m *pb.ModelInferResponse) ([]byte, bool) {
	ok := true
	b = appendString(b, 1, m.ModelName, &ok)
	b = appendString(b, 2, m.ModelVersion, &ok)
	b = appendString(b, 3, m.Id, &ok)
	b = appendParams(b, 4, m.Parameters, &ok)
	for _, o := range m.Outputs {
		start := openMessage(&b, 5)
		b = appendString(b, 1, o.GetName(), &ok)
		b = appendString(b, 2, o.GetDatatype(), &ok)
		b = appendPacked(b, 3, o.GetShape(), func(v int64) uint64 { return uint64(v) })
		b = appendParams(b, 4, o.GetParameters(), &ok)
		if c := o.GetContents(); c != nil {
			cs := openMessage(&b, 5)
			b = appendContents(b, c)
			b = closeMessage(b, cs)
		}
		b = closeMessage(b, start)
	}
	for _, r := range m.RawOutputContents {
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendBytes(b, r)
	}
	return b, ok
}

func appendContents(b []byte, c *pb.InferTensorContents) []byte {
	b = appendPacked(b, 1, c.BoolContents, func(v bool) uint64 {
		if v {
			return 1
		}
		return 0
	})
	b = appendPacked(b, 2, c.IntContents, func(v int32) uint64 { return uint64(int64(v)) })
	b = appendPacked(b, 3, c.Int64Contents, func(v int64) uint64 { return uint64(v) })
	b = appendPacked(b, 4, c.UintContents, func(v uint32) uint64 { return uint64(v) })
	b = appendPacked(b, 5, c.Uint64Contents, func(v uint64) uint64 { return v })
	if len(c.Fp32Contents) > 0 {
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(4*len(c.Fp32Contents)))
		for _, v := range c.Fp32Contents {
			b = protowire.AppendFixed32(b, math.Float32bits(v))
		}
	}
	if len(c.Fp64Contents) > 0 {
		b = protowire.AppendTag(b, 7, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(8*len(c.Fp64Contents)))
		for _, v := range c.Fp64Contents {
			b = protowire.AppendFixed64(b, math.Float64bits(v))
		}
	}
	for _, v := range c.BytesContents {
		b = protowire.AppendTag(b, 8, protowire.BytesType)
		b = protowire.AppendBytes(b, v)
	}
	return b
}

// appendString appends a proto3 string field, which is left out when
// empty.
func appendString(b []byte, num protowire.Number, s string, ok *bool) []byte {
	if s == "" {
		return b
	}
	if !utf8.ValidString(s) {
		*ok = false
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendPacked appends a packed repeated varint field, left out when empty.
func appendPacked[T any](b []byte, num protowire.Number, s []T, conv func(T) uint64) []byte {
	if len(s) == 0 {
		return b
	}
	n := 0
	for _, v := range s {
		n += protowire.SizeVarint(conv(v))
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	for _, v := range s {
		b = protowire.AppendVarint(b, conv(v))
	}
	return b
}

// appendParams appends a map<string, InferParameter> field: one entry
// message per key, with key and value always written, as protobuf writes
// them.
func appendParams(b []byte, num protowire.Number, params map[string]*pb.InferParameter, ok *bool) []byte {
	for k, p := range params {
		start := openMessage(&b, num)
		if !utf8.ValidString(k) {
			*ok = false
		}
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
		vs := openMessage(&b, 2)
		switch c := p.GetParameterChoice().(type) {
		case *pb.InferParameter_BoolParam:
			b = protowire.AppendTag(b, 1, protowire.VarintType)
			b = protowire.AppendVarint(b, protowire.EncodeBool(c.BoolParam))
		case *pb.InferParameter_Int64Param:
			b = protowire.AppendTag(b, 2, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(c.Int64Param))
		case *pb.InferParameter_StringParam:
			if !utf8.ValidString(c.StringParam) {
				*ok = false
			}
			b = protowire.AppendTag(b, 3, protowire.BytesType)
			b = protowire.AppendString(b, c.StringParam)
		case *pb.InferParameter_DoubleParam:
			b = protowire.AppendTag(b, 4, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, math.Float64bits(c.DoubleParam))
		case *pb.InferParameter_Uint64Param:
			b = protowire.AppendTag(b, 5, protowire.VarintType)
			b = protowire.AppendVarint(b, c.Uint64Param)
		}
		b = closeMessage(b, vs)
		b = closeMessage(b, start)
	}
	return b
}

// openMessage appends the tag of a message field and a one-byte length
// to be filled by closeMessage, and returns where the length is.
func openMessage(b *[]byte, num protowire.Number) int {
	*b = protowire.AppendTag(*b, num, protowire.BytesType)
	*b = append(*b, 0)
	return len(*b) - 1
}

// closeMessage writes the length of the message that began after at,
// moving the message up when its length needs more than one byte (a
// message of 128 bytes or more, which is rare for one output and cheap
// beside writing it).
func closeMessage(b []byte, at int) []byte {
	n := len(b) - at - 1
	if n < 0x80 {
		b[at] = byte(n)
		return b
	}
	k := protowire.SizeVarint(uint64(n))
	b = append(b, make([]byte, k-1)...)
	copy(b[at+k:], b[at+1:at+1+n])
	protowire.AppendVarint(b[:at], uint64(n))
	return b
}
