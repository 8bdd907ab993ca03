package pbcodec

import (
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/inference/pb"
)

// BenchmarkCodec decodes a 1-row fraud request and encodes its response,
// with this codec (into a reused request, as the server's pooled calls
// do) and with protobuf's, which the server used before.
func BenchmarkCodec(b *testing.B) {
	req, err := proto.Marshal(requests()["fraud typed"].m)
	if err != nil {
		b.Fatal(err)
	}
	resp := responses()["fraud typed"]
	data := mem.BufferSlice{mem.SliceBuffer(req)}
	c := New()
	b.Run("decode/pbcodec", func(b *testing.B) {
		var m pb.ModelInferRequest
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Unmarshal(data, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/protobuf", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := proto.Unmarshal(req, new(pb.ModelInferRequest)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/pbcodec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out, err := c.Marshal(resp)
			if err != nil {
				b.Fatal(err)
			}
			out.Free()
		}
	})
	b.Run("encode/protobuf", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}
