package server_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/inference/pb"
)

// encodedRequest is a request the comparison's client encodes once and
// sends as the same bytes on every call. The client shares the machine's
// cores with the server, and encoding 30 features costs it about what
// decoding them costs the server: re-encoding on every call would count
// the benchmark client's protobuf work against ModelInfer's throughput.
// Responses are still decoded by protobuf, as for the empty call.
type encodedRequest struct{ data mem.BufferSlice }

func encodeRequest(b *testing.B, req *pb.ModelInferRequest) *encodedRequest {
	b.Helper()
	data, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	return &encodedRequest{data: mem.BufferSlice{mem.SliceBuffer(data)}}
}

// clientCodec sends an encodedRequest as it is and everything else
// through protobuf.
type clientCodec struct{ encoding.CodecV2 }

func (c clientCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*encodedRequest); ok {
		// Read-only and never freed (a SliceBuffer's Free does nothing),
		// so calls in flight can share it.
		return r.data, nil
	}
	return c.CodecV2.Marshal(v)
}

// withClientCodec is the comparison client's dial option.
func withClientCodec() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.ForceCodecV2(clientCodec{encoding.GetCodecV2(protoenc.Name)}))
}

// inferEncoded calls ModelInfer with a request encoded once.
func inferEncoded(conn *grpc.ClientConn, r *encodedRequest) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return conn.Invoke(ctx, pb.GRPCInferenceService_ModelInfer_FullMethodName, r, new(pb.ModelInferResponse))
	}
}
