package pbcodec

import (
	"bytes"
	"math"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/inference/pb"
)

func param(v any) *pb.InferParameter {
	switch v := v.(type) {
	case bool:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: v}}
	case int64:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: v}}
	case string:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_StringParam{StringParam: v}}
	case float64:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_DoubleParam{DoubleParam: v}}
	case uint64:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Uint64Param{Uint64Param: v}}
	}
	return &pb.InferParameter{}
}

func floats(n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(i) / 7
	}
	return out
}

type outT = pb.ModelInferResponse_InferOutputTensor

func responses() map[string]*pb.ModelInferResponse {
	return map[string]*pb.ModelInferResponse{
		"empty": {},
		"fraud typed": {ModelName: "fraud", ModelVersion: "2", Id: "req-1",
			Parameters: map[string]*pb.InferParameter{"maestro_server": param("maestro")},
			Outputs: []*outT{{Name: "probability", Datatype: "FP32", Shape: []int64{1, 1},
				Contents: &pb.InferTensorContents{Fp32Contents: []float32{0.25}}}}},
		"every content kind": {ModelName: "m", Outputs: []*outT{
			{Name: "b", Datatype: "BOOL", Shape: []int64{3}, Contents: &pb.InferTensorContents{BoolContents: []bool{true, false, true}}},
			{Name: "i", Datatype: "INT32", Shape: []int64{3}, Contents: &pb.InferTensorContents{IntContents: []int32{-1, 0, math.MaxInt32}}},
			{Name: "l", Datatype: "INT64", Shape: []int64{2}, Contents: &pb.InferTensorContents{Int64Contents: []int64{math.MinInt64, 300}}},
			{Name: "u", Datatype: "UINT32", Shape: []int64{2}, Contents: &pb.InferTensorContents{UintContents: []uint32{math.MaxUint32, 1}}},
			{Name: "ul", Datatype: "UINT64", Shape: []int64{1}, Contents: &pb.InferTensorContents{Uint64Contents: []uint64{math.MaxUint64}}},
			{Name: "d", Datatype: "FP64", Shape: []int64{2}, Contents: &pb.InferTensorContents{Fp64Contents: []float64{math.Inf(-1), 1.5}}},
			{Name: "s", Datatype: "BYTES", Shape: []int64{3}, Contents: &pb.InferTensorContents{BytesContents: [][]byte{[]byte("a"), {}, []byte("ccc")}}},
			{Name: "none", Datatype: "FP32", Shape: []int64{0}, Contents: &pb.InferTensorContents{}},
			{Name: "nil contents", Datatype: "FP32"},
		}},
		// Sizes on either side of the one-allocation and the pooling
		// thresholds.
		"medium output": {Outputs: []*outT{{Name: "p", Datatype: "FP32", Shape: []int64{100},
			Contents: &pb.InferTensorContents{Fp32Contents: floats(100)}}}},
		"long output and negative shape": {Outputs: []*outT{{Name: "p", Datatype: "FP32", Shape: []int64{-1, 1024},
			Contents: &pb.InferTensorContents{Fp32Contents: floats(1024)}}}},
		"raw": {ModelName: "m", Outputs: []*outT{{Name: "p", Datatype: "FP32", Shape: []int64{2}}, {Name: "q", Datatype: "BYTES", Shape: []int64{1}}},
			RawOutputContents: [][]byte{make([]byte, 8), {}}},
		"every parameter kind": {Outputs: []*outT{{Name: "p", Parameters: map[string]*pb.InferParameter{"b": param(false)}}},
			Parameters: map[string]*pb.InferParameter{"i": param(int64(-5)), "d": param(2.5), "u": param(uint64(7)), "s": param(""), "unset": {}}},
	}
}

// TestAppendResponseMatchesProtobuf checks the hand encoder against
// protobuf: what protobuf decodes from it equals the message, and a message
// with at most one map entry (so an order) is encoded to the same bytes.
func TestAppendResponseMatchesProtobuf(t *testing.T) {
	for name, m := range responses() {
		t.Run(name, func(t *testing.T) {
			got, ok := AppendResponse(nil, m)
			if !ok {
				t.Fatal("AppendResponse refused a valid message")
			}
			back := new(pb.ModelInferResponse)
			if err := proto.Unmarshal(got, back); err != nil {
				t.Fatalf("protobuf cannot decode the encoding: %v", err)
			}
			if !proto.Equal(back, m) {
				t.Fatalf("decoded %v, want %v", back, m)
			}
			if len(m.Parameters) <= 1 {
				want, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("encoding differs from protobuf's:\n got %x\nwant %x", got, want)
				}
			}
		})
	}
}

func TestMarshalRefusesInvalidUTF8(t *testing.T) {
	c := New()
	for name, m := range map[string]*pb.ModelInferResponse{
		"id":        {Id: "\xff"},
		"param key": {Parameters: map[string]*pb.InferParameter{"\xfe": param(true)}},
		"param":     {Parameters: map[string]*pb.InferParameter{"k": param("\xfe")}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, ok := AppendResponse(nil, m); ok {
				t.Fatal("AppendResponse accepted invalid UTF-8")
			}
			if _, err := c.Marshal(m); err == nil {
				t.Fatal("Marshal accepted invalid UTF-8")
			}
		})
	}
}

// reply is a pooled response as the server hands it over.
type reply struct {
	*pb.ModelInferResponse
	released int
}

func (r *reply) InferResponse() *pb.ModelInferResponse { return r.ModelInferResponse }
func (r *reply) Release()                              { r.released++ }

func TestMarshalReleasesReplyOnce(t *testing.T) {
	c := New()
	for name, m := range responses() {
		t.Run(name, func(t *testing.T) {
			r := &reply{ModelInferResponse: m}
			data, err := c.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			defer data.Free()
			if r.released != 1 {
				t.Fatalf("released %d times, want once", r.released)
			}
			back := new(pb.ModelInferResponse)
			if err := c.Unmarshal(data, back); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(back, m) {
				t.Fatalf("decoded %v, want %v", back, m)
			}
		})
	}
}

type inT = pb.ModelInferRequest_InferInputTensor

func requests() map[string]struct {
	m    *pb.ModelInferRequest
	fast bool // taken by the fast decoder
} {
	type tc = struct {
		m    *pb.ModelInferRequest
		fast bool
	}
	return map[string]tc{
		"empty": {&pb.ModelInferRequest{}, true},
		"fraud typed": {&pb.ModelInferRequest{ModelName: "fraud", ModelVersion: "2", Id: "x",
			Inputs: []*inT{{Name: "features", Datatype: "FP32", Shape: []int64{1, 30}, Contents: &pb.InferTensorContents{Fp32Contents: floats(30)}}}}, true},
		"fraud raw": {&pb.ModelInferRequest{ModelName: "fraud",
			Inputs:           []*inT{{Name: "features", Datatype: "FP32", Shape: []int64{1, 2}}},
			RawInputContents: [][]byte{make([]byte, 8)}}, true},
		"every content kind and outputs": {&pb.ModelInferRequest{ModelName: "m",
			Inputs: []*inT{
				{Name: "a", Datatype: "BOOL", Shape: []int64{2}, Contents: &pb.InferTensorContents{BoolContents: []bool{true, false}}},
				{Name: "b", Datatype: "INT32", Shape: []int64{2}, Contents: &pb.InferTensorContents{IntContents: []int32{-7, 7}}},
				{Name: "c", Datatype: "INT64", Shape: []int64{1}, Contents: &pb.InferTensorContents{Int64Contents: []int64{-1}}},
				{Name: "d", Datatype: "UINT32", Shape: []int64{1}, Contents: &pb.InferTensorContents{UintContents: []uint32{9}}},
				{Name: "e", Datatype: "UINT64", Shape: []int64{1}, Contents: &pb.InferTensorContents{Uint64Contents: []uint64{math.MaxUint64}}},
				{Name: "f", Datatype: "FP64", Shape: []int64{1}, Contents: &pb.InferTensorContents{Fp64Contents: []float64{math.NaN()}}},
				{Name: "g", Datatype: "BYTES", Shape: []int64{2}, Contents: &pb.InferTensorContents{BytesContents: [][]byte{[]byte("x"), {}}}},
				{Name: "h", Datatype: "FP32", Contents: &pb.InferTensorContents{}},
			},
			Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "p"}, {}}}, true},
		"request parameters": {&pb.ModelInferRequest{ModelName: "m", Parameters: map[string]*pb.InferParameter{"k": param(true)}}, false},
		"input parameters":   {&pb.ModelInferRequest{Inputs: []*inT{{Name: "a", Parameters: map[string]*pb.InferParameter{"k": param("v")}}}}, false},
		"output parameters": {&pb.ModelInferRequest{Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{
			{Name: "p", Parameters: map[string]*pb.InferParameter{"k": param(int64(1))}}}}, false},
	}
}

// decodeBoth decodes b with protobuf and with the codec into used, a
// message that already held another request, as a pooled one does.
func decodeBoth(t *testing.T, b []byte, used *pb.ModelInferRequest) (want *pb.ModelInferRequest, wantErr, gotErr error) {
	t.Helper()
	want = new(pb.ModelInferRequest)
	wantErr = proto.Unmarshal(b, want)
	gotErr = New().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, used)
	return want, wantErr, gotErr
}

// usedRequest is a message that held a larger request before, so that
// every reused slice and message has stale contents.
func usedRequest(t *testing.T) *pb.ModelInferRequest {
	t.Helper()
	prev := requests()["every content kind and outputs"].m
	prev.Id = "previous"
	prev.RawInputContents = [][]byte{[]byte("old raw"), []byte("more")}
	b, err := proto.Marshal(prev)
	if err != nil {
		t.Fatal(err)
	}
	m := new(pb.ModelInferRequest)
	if !DecodeRequest(b, m) {
		t.Fatal("the fast decoder refused the previous request")
	}
	return m
}

func TestDecodeRequestMatchesProtobuf(t *testing.T) {
	for name, tc := range requests() {
		t.Run(name, func(t *testing.T) {
			b, err := proto.Marshal(tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if fast := DecodeRequest(b, new(pb.ModelInferRequest)); fast != tc.fast {
				t.Fatalf("fast decoder took it: %v, want %v", fast, tc.fast)
			}
			for _, into := range []*pb.ModelInferRequest{new(pb.ModelInferRequest), usedRequest(t)} {
				want, wantErr, gotErr := decodeBoth(t, b, into)
				if wantErr != nil || gotErr != nil {
					t.Fatalf("errors: protobuf %v, codec %v", wantErr, gotErr)
				}
				if !proto.Equal(into, want) {
					t.Fatalf("decoded %v, want %v", into, want)
				}
			}
		})
	}
}

// TestDecodeRequestMatchesProtobufOnOddWire covers encodings protobuf
// accepts or refuses that proto.Marshal does not write.
func TestDecodeRequestMatchesProtobufOnOddWire(t *testing.T) {
	for name, b := range map[string][]byte{
		"unpacked shape":                  {0x2a, 0x04, 0x18, 0x01, 0x18, 0x02},
		"shape in two packed pieces":      {0x2a, 0x06, 0x1a, 0x01, 0x01, 0x1a, 0x01, 0x02},
		"contents twice merge":            {0x2a, 0x0e, 0x2a, 0x06, 0x32, 0x04, 0, 0, 0x80, 0x3f, 0x2a, 0x04, 0x18, 0x01, 0x18, 0x02},
		"model name twice, last wins":     {0x0a, 0x01, 'a', 0x0a, 0x01, 'b'},
		"unknown field":                   {0x48, 0x01},
		"truncated":                       {0x0a, 0x05, 'a'},
		"invalid UTF-8 name":              {0x0a, 0x01, 0xff},
		"model name as varint":            {0x08, 0x01},
		"fp32 not a multiple of 4":        {0x2a, 0x05, 0x2a, 0x03, 0x32, 0x01, 0x00},
		"field number zero":               {0x02, 0x00},
		"overlong varint in shape":        {0x2a, 0x0d, 0x1a, 0x0b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"empty contents message":          {0x2a, 0x02, 0x2a, 0x00},
		"bytes contents with empty entry": {0x2a, 0x04, 0x2a, 0x02, 0x42, 0x00},
	} {
		t.Run(name, func(t *testing.T) {
			into := usedRequest(t)
			want, wantErr, gotErr := decodeBoth(t, b, into)
			if (wantErr == nil) != (gotErr == nil) {
				t.Fatalf("errors: protobuf %v, codec %v", wantErr, gotErr)
			}
			if wantErr == nil && !proto.Equal(into, want) {
				t.Fatalf("decoded %v, want %v", into, want)
			}
		})
	}
}

// FuzzDecodeRequest holds the codec to protobuf on any input: the same
// verdict, and equal messages when both accept, decoding into a message
// that held another request.
func FuzzDecodeRequest(f *testing.F) {
	for _, tc := range requests() {
		b, err := proto.Marshal(tc.m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		into := usedRequest(t)
		want, wantErr, gotErr := decodeBoth(t, b, into)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("errors: protobuf %v, codec %v", wantErr, gotErr)
		}
		if wantErr == nil && !proto.Equal(into, want) {
			t.Fatalf("decoded %v, want %v", into, want)
		}
	})
}

// TestMarshalSizes checks that the test responses reach each way of
// handing bytes to gRPC: one allocation, a plain slice, a pooled buffer.
func TestMarshalSizes(t *testing.T) {
	var small, plain, pooled bool
	for _, m := range responses() {
		b, _ := AppendResponse(nil, m)
		switch n := len(b); {
		case n <= smallResponse:
			small = true
		case mem.IsBelowBufferPoolingThreshold(n):
			plain = true
		default:
			pooled = true
		}
	}
	if !small || !plain || !pooled {
		t.Fatalf("sizes covered: one allocation %v, plain %v, pooled %v", small, plain, pooled)
	}
}
