package server_test

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
)

// TestGRPCInferOnReusedCalls sends requests of different shapes one after
// another on one connection, so that each is decoded into the storage the
// one before left (the server pools its calls), failures and requests the
// fast decoder leaves to protobuf included: nothing of one request may show
// in the next one's answer.
func TestGRPCInferOnReusedCalls(t *testing.T) {
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: repo(t)})
	c := srv.Client(t)
	raw := func(v ...float32) [][]byte {
		b := make([]byte, 0, 4*len(v))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
		return [][]byte{b}
	}
	x := func(shape []int64, v ...float32) []*pb.ModelInferRequest_InferInputTensor {
		return []*pb.ModelInferRequest_InferInputTensor{fp32Input("x", shape, v...)}
	}
	steps := []struct {
		name string
		req  *pb.ModelInferRequest
		code codes.Code
		want []float32 // typed or raw y
		ver  string
	}{
		{"two rows with an id", &pb.ModelInferRequest{ModelName: "m", Id: "first", Inputs: x([]int64{2, 3}, 1, 2, 3, 4, 5, 6)}, codes.OK, []float32{26, 35}, "2"},
		{"one row, no id", &pb.ModelInferRequest{ModelName: "m", ModelVersion: "1", Inputs: x([]int64{1, 3}, 1, 1, 1)}, codes.OK, []float32{13}, "1"},
		{"raw", &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 3}}},
			RawInputContents: raw(1, 2, 3)}, codes.OK, []float32{26}, "2"},
		{"typed after raw", &pb.ModelInferRequest{ModelName: "m", Inputs: x([]int64{1, 3}, 0, 0, 0)}, codes.OK, []float32{20}, "2"},
		{"wrong shape", &pb.ModelInferRequest{ModelName: "m", Inputs: x([]int64{1, 4}, 1, 2, 3, 4)}, codes.InvalidArgument, nil, ""},
		{"requested output", &pb.ModelInferRequest{ModelName: "m", Inputs: x([]int64{1, 3}, 0, 0, 1),
			Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "y"}}}, codes.OK, []float32{21}, "2"},
		{"parameters, decoded by protobuf", &pb.ModelInferRequest{ModelName: "m", Id: "p",
			Parameters: map[string]*pb.InferParameter{"k": {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: true}}},
			Inputs:     x([]int64{1, 3}, 2, 2, 2)}, codes.OK, []float32{26}, "2"},
		{"no batch dimension", &pb.ModelInferRequest{ModelName: "flat", Inputs: x([]int64{2}, 1.5, 2)}, codes.OK, []float32{3.5}, "1"},
		{"three rows", &pb.ModelInferRequest{ModelName: "m", Inputs: x([]int64{3, 3}, 0, 0, 0, 1, 1, 1, 2, 2, 2)}, codes.OK, []float32{20, 23, 26}, "2"},
	}
	for range 3 {
		for _, s := range steps {
			resp, err := c.ModelInfer(ctxT(t), s.req)
			if status.Code(err) != s.code {
				t.Fatalf("%s: got %v, want %v", s.name, err, s.code)
			}
			if err != nil {
				continue
			}
			if resp.GetModelName() != s.req.GetModelName() || resp.GetModelVersion() != s.ver || resp.GetId() != s.req.GetId() {
				t.Errorf("%s: name, version, id = %q, %q, %q; want %q, %q, %q", s.name,
					resp.GetModelName(), resp.GetModelVersion(), resp.GetId(), s.req.GetModelName(), s.ver, s.req.GetId())
			}
			if len(resp.GetOutputs()) != 1 || resp.GetOutputs()[0].GetName() != "y" {
				t.Fatalf("%s: outputs %v", s.name, resp.GetOutputs())
			}
			got := resp.GetOutputs()[0].GetContents().GetFp32Contents()
			if len(s.req.GetRawInputContents()) > 0 {
				if resp.GetOutputs()[0].GetContents() != nil || len(resp.GetRawOutputContents()) != 1 {
					t.Fatalf("%s: want raw output only, got %v", s.name, resp)
				}
				out := resp.GetRawOutputContents()[0]
				got = nil
				for i := 0; i+4 <= len(out); i += 4 {
					got = append(got, math.Float32frombits(binary.LittleEndian.Uint32(out[i:])))
				}
			} else if len(resp.GetRawOutputContents()) > 0 {
				t.Errorf("%s: raw output for a typed request", s.name)
			}
			if !slices.Equal(got, s.want) {
				t.Errorf("%s: y = %v, want %v", s.name, got, s.want)
			}
		}
	}
}
