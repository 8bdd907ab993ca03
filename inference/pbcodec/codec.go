// Package pbcodec is the inference server's gRPC codec: ModelInferRequest
// is decoded by hand into the caller's message, reusing the slices and
// strings a pooled message already holds, and ModelInferResponse is encoded
// by hand; every other message, and any ModelInferRequest the fast decoder
// does not take (request parameters, unknown fields, unpacked repeated
// fields, anything malformed), goes through the protobuf codec, so that the
// wire format and its errors are protobuf's.
//
// A server installs it with grpc.ForceServerCodecV2, which applies to that
// server only; nothing is registered globally.
package pbcodec

import (
	"sync"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/inference/pb"
)

// Reply is a ModelInferResponse whose storage goes back to its owner once
// the codec has encoded it. It is a proto.Message (the response's own), so
// that interceptors and stats handlers see an ordinary response.
type Reply interface {
	proto.Message
	// InferResponse is the response to encode.
	InferResponse() *pb.ModelInferResponse
	// Release is called once the response is encoded; nothing may use the
	// response afterwards.
	Release()
}

// Codec implements encoding.CodecV2 for the inference service. The zero
// value is not usable; call New.
type Codec struct {
	fallback encoding.CodecV2
	pool     mem.BufferPool
	scratch  sync.Pool // *[]byte that responses are encoded into
}

var _ encoding.CodecV2 = (*Codec)(nil)

// New returns a codec that falls back to grpc-go's protobuf codec.
func New() *Codec {
	return &Codec{
		fallback: encoding.GetCodecV2(protoenc.Name),
		pool:     mem.DefaultBufferPool(),
		scratch:  sync.Pool{New: func() any { return new([]byte) }},
	}
}

// Name is the content subtype: the messages are protobuf on the wire.
func (c *Codec) Name() string { return protoenc.Name }

// Marshal encodes v. A Reply is released once encoded, also when encoding
// fails.
func (c *Codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case Reply:
		defer m.Release()
		return c.marshalResponse(m.InferResponse())
	case *pb.ModelInferResponse:
		return c.marshalResponse(m)
	default:
		return c.fallback.Marshal(v)
	}
}

func (c *Codec) marshalResponse(m *pb.ModelInferResponse) (mem.BufferSlice, error) {
	sp := c.scratch.Get().(*[]byte)
	defer c.scratch.Put(sp)
	b, ok := AppendResponse((*sp)[:0], m)
	*sp = b
	if !ok {
		// Invalid UTF-8 in a string: protobuf's codec reports it.
		return c.fallback.Marshal(m)
	}
	if len(b) <= smallResponse {
		return small(b), nil
	}
	if mem.IsBelowBufferPoolingThreshold(len(b)) {
		return mem.BufferSlice{mem.SliceBuffer(append([]byte(nil), b...))}, nil
	}
	return mem.BufferSlice{mem.Copy(b, c.pool)}, nil
}

// smallResponse is the largest response encoded into one allocation; a
// 1-row response with one output is about 60 bytes.
const smallResponse = 256

// smallBuffer is a small response's bytes and the slice gRPC takes them
// in, allocated together: the usual three allocations (bytes, buffer
// header, slice) become one.
type smallBuffer struct {
	list  [1]mem.Buffer
	buf   mem.SliceBuffer
	bytes [smallResponse]byte
}

func small(b []byte) mem.BufferSlice {
	s := new(smallBuffer)
	s.buf = s.bytes[:copy(s.bytes[:], b)]
	s.list[0] = &s.buf // a SliceBuffer's methods are on the value; its Free does nothing
	return s.list[:]
}

// Unmarshal decodes data into v. A ModelInferRequest is decoded in place:
// its slices' storage and its strings are reused when they fit.
func (c *Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*pb.ModelInferRequest)
	if !ok {
		return c.fallback.Unmarshal(data, v)
	}
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		buf := data.MaterializeToBuffer(c.pool)
		defer buf.Free()
		b = buf.ReadOnlyData()
	}
	if DecodeRequest(b, m) {
		return nil
	}
	// grpc-go wraps the error in its INTERNAL status, as for its own codec.
	m.Reset()
	return proto.Unmarshal(b, m)
}
