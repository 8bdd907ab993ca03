package server

import (
	"context"
	"encoding/binary"
	"math"
	"path/filepath"
	"testing"

	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime/builtin"
)

// BenchmarkModelInferHandler measures the server's own work per request,
// without the network or gRPC: lookup, decoding, validation, the model,
// building the response and metrics (the wire encoding and decoding are
// pbcodec's, BenchmarkCodec). The fraud model's dynamic batcher takes its direct
// path here, as for a lone caller.
func BenchmarkModelInferHandler(b *testing.B) {
	for _, tc := range []struct {
		name string
		raw  bool
	}{{"typed", false}, {"raw", true}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := New(Config{Models: repository.Options{Dir: filepath.Join("..", "..", "examples", "models"), Registry: builtin.Registry()}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(s.closeUnserved)
			x := make([]float32, 30)
			for i := range x {
				x[i] = float32(i) / 10
			}
			in := &pb.ModelInferRequest_InferInputTensor{Name: "features", Datatype: "FP32", Shape: []int64{1, 30}}
			req := &pb.ModelInferRequest{ModelName: "fraud", Inputs: []*pb.ModelInferRequest_InferInputTensor{in}}
			if tc.raw {
				raw := make([]byte, 0, 4*len(x))
				for _, v := range x {
					raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
				}
				req.RawInputContents = [][]byte{raw}
			} else {
				in.Contents = &pb.InferTensorContents{Fp32Contents: x}
			}
			g := &grpcService{s: s}
			ctx := context.Background()
			if _, err := g.ModelInfer(ctx, req); err != nil {
				b.Fatal(err)
			}
			// The response storage is reused, as the server's pooled
			// calls reuse it.
			var a inferStorage
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.modelInfer(ctx, req, &a); err != nil {
					b.Fatal(err)
				}
				a.clear()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
