package oip

import (
	"bytes"
	"testing"

	"github.com/maestro-ml/maestro/inference/pb"
	"google.golang.org/protobuf/proto"
)

// The filter runs these decoders on client input inside the VM, where a
// panic traps the whole VM: fuzz them for panics and for consistency.

func FuzzParseJSONRequest(f *testing.F) {
	f.Add([]byte(`{"inputs":[{"name":"features","shape":[1,3],"datatype":"FP32","data":[[1,2,3]]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"s","shape":[2],"datatype":"BYTES","data":["a","b"]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"b","shape":[0],"datatype":"BOOL","data":[]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[9223372036854775807,2],"datatype":"INT8","data":[1]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseJSONRequest(body)
		if err != nil {
			return
		}
		for _, in := range r.Inputs {
			n, err := elements(in.Name, in.Shape)
			if err != nil || n != in.Len() {
				t.Fatalf("accepted input %q with %d elements for shape %v (%v)", in.Name, in.Len(), in.Shape, err)
			}
		}
		if _, err := EncodeJSONRequest(r.ID, r.Inputs); err != nil {
			t.Fatalf("accepted request does not re-encode: %v", err)
		}
	})
}

func FuzzParseGRPCRequest(f *testing.F) {
	seeds := []*pb.ModelInferRequest{
		{ModelName: "fraud", Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "features", Datatype: "FP32", Shape: []int64{1, 2}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2}}}}},
		{ModelName: "fraud", Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "f", Datatype: "FP16", Shape: []int64{1}}}, RawInputContents: [][]byte{{0, 0x3c}}},
		{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "s", Datatype: "BYTES", Shape: []int64{1}, Contents: &pb.InferTensorContents{BytesContents: [][]byte{[]byte("x")}}}}},
	}
	for _, s := range seeds {
		b, _ := proto.Marshal(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := ParseGRPCRequest(msg)
		re, rerr := RewriteGRPCRequest(msg, "m", "1")
		if err == nil && rerr != nil {
			t.Fatalf("accepted request cannot be rewritten: %v", rerr)
		}
		framed, ferr := AppendRewriteGRPCRequest([]byte{7}, msg, "m", "1", true)
		if (ferr == nil) != (rerr == nil) || (rerr == nil && !bytes.Equal(framed, append([]byte{7}, Frame(re)...))) {
			t.Fatalf("appending rewrite (%v) differs from RewriteGRPCRequest (%v)", ferr, rerr)
		}
		if err != nil {
			return
		}
		for _, in := range r.Inputs {
			n, err := elements(in.Name, in.Shape)
			if err != nil || n != in.Len() {
				t.Fatalf("accepted input %q with %d elements for shape %v (%v)", in.Name, in.Len(), in.Shape, err)
			}
		}
	})
}

func FuzzDecodeResponses(f *testing.F) {
	ok, _ := EncodeGRPCResponse(&Response{ModelName: "m", Parameters: []Param{{"a", "b"}}, Outputs: []Tensor{{Name: "p", Datatype: "FP32", Shape: []int64{1}, Values: []float64{0.5}}}})
	f.Add(ok)
	f.Add([]byte(`{"model_name":"m","outputs":[{"name":"p","shape":[1],"datatype":"FP32","data":[0.5]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeGRPCResponse(b)
		_, _ = DecodeJSONResponse(b)
		_, _ = Unframe(b)
	})
}
