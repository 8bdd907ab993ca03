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
	if mem.IsBelowBufferPoolingThreshold(len(b)) {
		return mem.BufferSlice{mem.SliceBuffer(append([]byte(nil), b...))}, nil
	}
	return mem.BufferSlice{mem.Copy(b, c.pool)}, nil
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
