package oip

import (
	"testing"
)

func benchTensor(rows int) Tensor {
	v := make([]float64, rows*30)
	for i := range v {
		v[i] = float64(float32(i%17)*0.37 - 2)
	}
	return Tensor{Name: "features", Datatype: "FP32", Shape: []int64{int64(rows), 30}, Values: v}
}

// The filter decodes every REST request and member answer and encodes one
// answer per request; these are the per-request codec costs natively.
func BenchmarkCodecs(b *testing.B) {
	in := benchTensor(1)
	req, _ := EncodeJSONRequest("id", []Tensor{in})
	resp, _ := EncodeJSONResponse(&Response{ModelName: "fraud", Outputs: []Tensor{{Name: "probability", Datatype: "FP32", Shape: []int64{1, 1}, Values: []float64{0.25}}}})
	greq, _ := EncodeGRPCRequest(&Request{ModelName: "fraud", Inputs: []Tensor{in}})
	gresp, _ := EncodeGRPCResponse(&Response{ModelName: "fraud", Outputs: []Tensor{{Name: "probability", Datatype: "FP32", Shape: []int64{1, 1}, Values: []float64{0.25}}}})
	cases := map[string]func() error{
		"json-request-1x30": func() error { _, err := ParseJSONRequest(req); return err },
		"json-response":     func() error { _, err := DecodeJSONResponse(resp); return err },
		"grpc-request-1x30": func() error { _, err := ParseGRPCRequest(greq); return err },
		"grpc-response":     func() error { _, err := DecodeGRPCResponse(gresp); return err },
	}
	for name, fn := range cases {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
