package oip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/inference/pb"
	"google.golang.org/protobuf/proto"
)

func TestInferPath(t *testing.T) {
	tests := []struct {
		path, model, version string
		ok                   bool
	}{
		{"/v2/models/fraud/infer", "fraud", "", true},
		{"/v2/models/fraud/versions/2/infer?x=1", "fraud", "2", true},
		{"/v2/models/fraud/ready", "", "", false},
		{"/v2/models//infer", "", "", false},
		{"/v2/models/a/b/infer", "", "", false},
		{"/v2/models/a/versions//infer", "", "", false},
		{"/inference.GRPCInferenceService/ModelInfer", "", "", false},
	}
	for _, tc := range tests {
		m, v, ok := InferPath(tc.path)
		if m != tc.model || v != tc.version || ok != tc.ok {
			t.Errorf("InferPath(%q) = %q %q %v, want %q %q %v", tc.path, m, v, ok, tc.model, tc.version, tc.ok)
		}
		if ok {
			if back := InferPathFor(m, v); !strings.HasPrefix(tc.path, back) {
				t.Errorf("InferPathFor(%q, %q) = %q", m, v, back)
			}
		}
	}
}

func TestParseJSONRequest(t *testing.T) {
	good := `{"id":"r1","parameters":{"p":1},"inputs":[` +
		`{"name":"features","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4.5,-5,6e-1]]},` +
		`{"name":"flag","shape":[2],"datatype":"BOOL","data":[true,false]},` +
		`{"name":"txt","shape":[1],"datatype":"BYTES","data":["hi"]}],"outputs":[{"name":"probability"}]}`
	r, err := ParseJSONRequest([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "r1" || len(r.Inputs) != 3 {
		t.Fatalf("request = %+v", r)
	}
	if want := []float64{1, 2, 3, 4.5, -5, float64(float32(0.6))}; !reflect.DeepEqual(r.Inputs[0].Values, want) {
		t.Errorf("features = %v, want %v", r.Inputs[0].Values, want)
	}
	if rows, width := r.Inputs[0].RowsWidth(); rows != 2 || width != 3 {
		t.Errorf("RowsWidth = %d, %d", rows, width)
	}
	if !reflect.DeepEqual(r.Inputs[1].Values, []float64{1, 0}) || string(r.Inputs[2].Bytes[0]) != "hi" {
		t.Errorf("flag/txt = %v %q", r.Inputs[1].Values, r.Inputs[2].Bytes)
	}

	bad := map[string]string{
		"not json":        `{`,
		"no inputs":       `{"inputs":[]}`,
		"no name":         `{"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]}`,
		"bad datatype":    `{"inputs":[{"name":"x","shape":[1],"datatype":"FP128","data":[1]}]}`,
		"no shape":        `{"inputs":[{"name":"x","datatype":"FP32","data":[1]}]}`,
		"negative shape":  `{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}`,
		"huge shape":      `{"inputs":[{"name":"x","shape":[4294967296,4294967296],"datatype":"FP32","data":[1]}]}`,
		"count mismatch":  `{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}`,
		"fewer bytes":     `{"inputs":[{"name":"x","shape":[100],"datatype":"FP32","data":[1]}]}`,
		"string in fp32":  `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["1"]}]}`,
		"fraction in int": `{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[1.5]}]}`,
		"null element":    `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[null]}]}`,
		"object element":  `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[{}]}]}`,
		"no data":         `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}`,
		"deep":            `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":` + strings.Repeat("[", 40) + "1" + strings.Repeat("]", 40) + `}]}`,
	}
	for name, body := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := ParseJSONRequest([]byte(body))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseJSONRequest(%s) = %v, want ErrInvalid", body, err)
			}
		})
	}
	if _, err := ParseJSONRequest([]byte(`{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}`)); !strings.Contains(err.Error(), `tensor "x": shape [3] needs 3 elements, data holds 2`) {
		t.Errorf("message does not name the tensor: %v", err)
	}
}

func TestJSONResponseRoundTrip(t *testing.T) {
	in := &Response{ModelName: "fraud-ensemble", ModelVersion: "1", ID: "q\"<1>",
		Parameters: []Param{{"answered", "a,b"}, {"n", int64(2)}, {"ok", true}, {"ms", 1.5}},
		Outputs: []Tensor{
			{Name: "probability", Datatype: "FP32", Shape: []int64{2, 1}, Values: []float64{0.25, float64(float32(0.1))}},
			{Name: "class", Datatype: "INT64", Shape: []int64{2}, Values: []float64{1, 0}},
			{Name: "s", Datatype: "BYTES", Shape: []int64{1}, Bytes: [][]byte{[]byte("x\ny")}},
		}}
	b, err := EncodeJSONResponse(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeJSONResponse(b)
	if err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	if out.ModelName != in.ModelName || out.ID != in.ID || !reflect.DeepEqual(out.Outputs, in.Outputs) {
		t.Fatalf("round trip:\n got %+v\nwant %+v\n%s", out, in, b)
	}
	want := map[string]any{"answered": "a,b", "n": 2.0, "ok": true, "ms": 1.5}
	for _, p := range out.Parameters {
		if want[p.Key] != p.Value {
			t.Errorf("parameter %s = %v, want %v", p.Key, p.Value, want[p.Key])
		}
	}
	if _, err := EncodeJSONResponse(&Response{Outputs: []Tensor{{Name: "x", Datatype: "FP32", Shape: []int64{1}, Values: []float64{math.NaN()}}}}); err == nil {
		t.Error("NaN encoded into JSON")
	}
	if _, err := DecodeJSONResponse(EncodeJSONError("model \"x\" not found")); err == nil || !strings.Contains(err.Error(), `model "x" not found`) {
		t.Errorf("error body decoded as %v", err)
	}
}

func TestEncodeJSONRequest(t *testing.T) {
	in := []Tensor{{Name: "probability", Datatype: "FP32", Shape: []int64{1, 1}, Values: []float64{0.5}}}
	b, err := EncodeJSONRequest("id7", in)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseJSONRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "id7" || !reflect.DeepEqual(r.Inputs, in) {
		t.Fatalf("request round trip: %+v from %s", r, b)
	}
}

func rawLE[T any](vs ...T) []byte {
	var b []byte
	for _, v := range vs {
		b, _ = binary.Append(b, binary.LittleEndian, v)
	}
	return b
}

func TestGRPCRequestAgainstGeneratedCode(t *testing.T) {
	req := &pb.ModelInferRequest{
		ModelName: "fraud", ModelVersion: "2", Id: "r9",
		Parameters: map[string]*pb.InferParameter{"p": {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "v"}}},
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "features", Datatype: "FP32", Shape: []int64{1, 3}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2.5, -3}}},
			{Name: "ids", Datatype: "INT64", Shape: []int64{2}, Contents: &pb.InferTensorContents{Int64Contents: []int64{-7, 1 << 40}}},
			{Name: "small", Datatype: "INT8", Shape: []int64{2}, Contents: &pb.InferTensorContents{IntContents: []int32{-3, 4}}},
			{Name: "flags", Datatype: "BOOL", Shape: []int64{2}, Contents: &pb.InferTensorContents{BoolContents: []bool{true, false}}},
			{Name: "text", Datatype: "BYTES", Shape: []int64{1}, Contents: &pb.InferTensorContents{BytesContents: [][]byte{[]byte("abc")}}},
		},
		Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "probability"}},
	}
	msg, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseGRPCRequest(msg)
	if err != nil {
		t.Fatal(err)
	}
	if r.ModelName != "fraud" || r.ModelVersion != "2" || r.ID != "r9" {
		t.Fatalf("header fields: %+v", r)
	}
	wants := [][]float64{{1, 2.5, -3}, {-7, 1 << 40}, {-3, 4}, {1, 0}}
	for i, w := range wants {
		if !reflect.DeepEqual(r.Inputs[i].Values, w) {
			t.Errorf("input %s = %v, want %v", r.Inputs[i].Name, r.Inputs[i].Values, w)
		}
	}
	if string(r.Inputs[4].Bytes[0]) != "abc" {
		t.Errorf("bytes input = %q", r.Inputs[4].Bytes)
	}

	// Raw contents, as Triton clients send them.
	raw := &pb.ModelInferRequest{
		ModelName: "fraud",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "f", Datatype: "FP32", Shape: []int64{2}},
			{Name: "h", Datatype: "FP16", Shape: []int64{2}},
			{Name: "s", Datatype: "BYTES", Shape: []int64{2}},
		},
		RawInputContents: [][]byte{rawLE(float32(0.5), float32(-2)), rawLE(uint16(0x3c00), uint16(0xc000)),
			append(rawLE(uint32(2)), append([]byte("ab"), rawLE(uint32(0))...)...)},
	}
	msg, _ = proto.Marshal(raw)
	r, err = ParseGRPCRequest(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Inputs[0].Values, []float64{0.5, -2}) || !reflect.DeepEqual(r.Inputs[1].Values, []float64{1, -2}) ||
		len(r.Inputs[2].Bytes) != 2 || string(r.Inputs[2].Bytes[0]) != "ab" {
		t.Errorf("raw inputs decoded as %+v", r.Inputs)
	}

	// Rewriting the model keeps everything else.
	re, err := RewriteGRPCRequest(msg, "fraud-logistic", "")
	if err != nil {
		t.Fatal(err)
	}
	var back pb.ModelInferRequest
	if err := proto.Unmarshal(re, &back); err != nil {
		t.Fatal(err)
	}
	raw.ModelName = "fraud-logistic"
	if !proto.Equal(&back, raw) {
		t.Errorf("rewritten request = %v, want %v", &back, raw)
	}
	re, _ = RewriteGRPCRequest(msg, "m", "3")
	if err := proto.Unmarshal(re, &back); err != nil || back.ModelName != "m" || back.ModelVersion != "3" {
		t.Errorf("rewrite with version: %v %v", &back, err)
	}
}

func TestGRPCRequestErrors(t *testing.T) {
	marshal := func(r *pb.ModelInferRequest) []byte { b, _ := proto.Marshal(r); return b }
	in := func(name, dt string, shape []int64, c *pb.InferTensorContents) *pb.ModelInferRequest_InferInputTensor {
		return &pb.ModelInferRequest_InferInputTensor{Name: name, Datatype: dt, Shape: shape, Contents: c}
	}
	tests := map[string]struct {
		msg  []byte
		want string
	}{
		"garbage":        {[]byte{0xff, 0xff}, "ModelInferRequest"},
		"truncated":      {[]byte{0x0a, 0x05, 'a'}, "ModelInferRequest"},
		"no model":       {marshal(&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{1}, &pb.InferTensorContents{Fp32Contents: []float32{1}})}}), "model_name is missing"},
		"no inputs":      {marshal(&pb.ModelInferRequest{ModelName: "m"}), "no inputs"},
		"wrong field":    {marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{1}, &pb.InferTensorContents{Fp64Contents: []float64{1}})}}), `tensor "x": contents field 7 does not carry FP32`},
		"count":          {marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{3}, &pb.InferTensorContents{Fp32Contents: []float32{1}})}}), `tensor "x": shape [3] needs 3 elements, contents hold 1`},
		"too many":       {marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{1}, &pb.InferTensorContents{Fp32Contents: []float32{1, 2}})}}), "more than the 1 elements"},
		"raw size":       {marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{2}, nil)}, RawInputContents: [][]byte{{1, 2, 3}}}), `tensor "x": shape [2] of FP32 needs 8 raw bytes, got 3`},
		"raw count":      {marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{1}, nil)}, RawInputContents: [][]byte{{1, 2, 3, 4}, {1}}}), "raw_input_contents: 2 entries for 1 tensors"},
		"bytes overrun":  {marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{in("s", "BYTES", []int64{1}, nil)}, RawInputContents: [][]byte{rawLE(uint32(9))}}), "overruns"},
		"unknown type":   {marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{in("x", "STR", []int64{1}, nil)}}), `unknown datatype "STR"`},
		"negative shape": {marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{-2}, nil)}}), "negative dimension"},
		"unnamed":        {marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{in("", "FP32", []int64{1}, nil)}}), "inputs[0]: name is missing"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseGRPCRequest(tc.msg)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseGRPCRequest = %v, want ErrInvalid with %q", err, tc.want)
			}
		})
	}
}

func TestGRPCResponseAgainstGeneratedCode(t *testing.T) {
	in := &Response{ModelName: "fraud-ensemble", ModelVersion: "1", ID: "r1",
		Parameters: []Param{{"answered", "a,b"}, {"n", int64(-2)}, {"ok", true}, {"ms", 1.5}, {"u", uint64(7)}},
		Outputs: []Tensor{
			{Name: "probability", Datatype: "FP32", Shape: []int64{2, 1}, Values: []float64{0.25, float64(float32(0.1))}},
			{Name: "class", Datatype: "INT64", Shape: []int64{2}, Values: []float64{1, 0}},
			{Name: "d", Datatype: "FP64", Shape: []int64{1}, Values: []float64{0.1}},
		}}
	msg, err := EncodeGRPCResponse(in)
	if err != nil {
		t.Fatal(err)
	}
	var got pb.ModelInferResponse
	if err := proto.Unmarshal(msg, &got); err != nil {
		t.Fatal(err)
	}
	if got.ModelName != "fraud-ensemble" || got.Parameters["answered"].GetStringParam() != "a,b" || got.Parameters["n"].GetInt64Param() != -2 ||
		!got.Parameters["ok"].GetBoolParam() || got.Parameters["ms"].GetDoubleParam() != 1.5 || got.Parameters["u"].GetUint64Param() != 7 {
		t.Errorf("generated code reads %v", &got)
	}
	if c := got.Outputs[0].Contents.Fp32Contents; !reflect.DeepEqual(c, []float32{0.25, 0.1}) || !reflect.DeepEqual(got.Outputs[0].Shape, []int64{2, 1}) {
		t.Errorf("fp32 output = %v %v", c, got.Outputs[0].Shape)
	}
	if c := got.Outputs[1].Contents.Int64Contents; !reflect.DeepEqual(c, []int64{1, 0}) {
		t.Errorf("int64 output = %v", c)
	}
	back, err := DecodeGRPCResponse(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, in) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, in)
	}

	// A server answering with raw_output_contents.
	rawResp := &pb.ModelInferResponse{ModelName: "fraud", Outputs: []*pb.ModelInferResponse_InferOutputTensor{
		{Name: "probability", Datatype: "FP32", Shape: []int64{2, 1}},
		{Name: "class", Datatype: "INT64", Shape: []int64{2, 1}},
	}, RawOutputContents: [][]byte{rawLE(float32(0.75), float32(0.125)), rawLE(int64(1), int64(-1))}}
	msg, _ = proto.Marshal(rawResp)
	back, err = DecodeGRPCResponse(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Outputs[0].Values, []float64{0.75, 0.125}) || !reflect.DeepEqual(back.Outputs[1].Values, []float64{1, -1}) {
		t.Errorf("raw outputs = %+v", back.Outputs)
	}
}

func TestFrame(t *testing.T) {
	msg := []byte("hello")
	got, err := Unframe(Frame(msg))
	if err != nil || string(got) != "hello" {
		t.Fatalf("Unframe(Frame) = %q, %v", got, err)
	}
	for name, body := range map[string][]byte{
		"short":      {0, 0, 0},
		"compressed": {1, 0, 0, 0, 0},
		"length":     {0, 0, 0, 0, 9, 'a'},
		"two":        append(Frame(msg), Frame(msg)...),
	} {
		if _, err := Unframe(body); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Unframe = %v", name, err)
		}
	}
}

func TestHalfToFloat(t *testing.T) {
	for h, want := range map[uint16]float64{0x3c00: 1, 0xc000: -2, 0x3555: 0.333251953125, 0x0001: math.Ldexp(1, -24), 0x7c00: math.Inf(1), 0: 0} {
		if got := halfToFloat(h); got != want {
			t.Errorf("halfToFloat(%#x) = %v, want %v", h, got, want)
		}
	}
	if !math.IsNaN(halfToFloat(0x7e00)) {
		t.Error("NaN half not NaN")
	}
}

// TestEncodedTensorsAgainstGeneratedCode checks the in-place encoder on
// every contents field, with lengths that take multi-byte varints, and
// that the framed encodings are the frames of the plain ones.
func TestEncodedTensorsAgainstGeneratedCode(t *testing.T) {
	long := make([]float64, 200) // packed FP64 contents over 127 bytes
	for i := range long {
		long[i] = float64(i) / 7
	}
	in := &Response{ModelName: "m", Parameters: []Param{{"members", strings.Repeat("a=0.5 ", 40)}, {"", "no key"}},
		Outputs: []Tensor{
			{Name: "b", Datatype: "BOOL", Shape: []int64{3}, Values: []float64{1, 0, 1}},
			{Name: "i", Datatype: "INT32", Shape: []int64{2}, Values: []float64{-3, 300}},
			{Name: "u", Datatype: "UINT64", Shape: []int64{1}, Values: []float64{1 << 40}},
			{Name: "s", Datatype: "BYTES", Shape: []int64{2}, Bytes: [][]byte{[]byte("x"), []byte(strings.Repeat("y", 130))}},
			{Name: "d", Datatype: "FP64", Shape: []int64{200, 1}, Values: long},
			{Name: "e", Datatype: "FP32", Shape: []int64{0}},
		}}
	msg, err := EncodeGRPCResponse(in)
	if err != nil {
		t.Fatal(err)
	}
	var got pb.ModelInferResponse
	if err := proto.Unmarshal(msg, &got); err != nil {
		t.Fatal(err)
	}
	o := got.Outputs
	if len(o) != 6 || !reflect.DeepEqual(o[0].Contents.BoolContents, []bool{true, false, true}) ||
		!reflect.DeepEqual(o[1].Contents.IntContents, []int32{-3, 300}) ||
		!reflect.DeepEqual(o[2].Contents.Uint64Contents, []uint64{1 << 40}) ||
		!reflect.DeepEqual(o[3].Contents.BytesContents, [][]byte{[]byte("x"), []byte(strings.Repeat("y", 130))}) ||
		!reflect.DeepEqual(o[4].Contents.Fp64Contents, long) || !reflect.DeepEqual(o[4].Shape, []int64{200, 1}) ||
		o[5].Contents == nil || o[5].Datatype != "FP32" {
		t.Errorf("generated code reads %v", o)
	}
	if got.Parameters["members"].GetStringParam() != strings.Repeat("a=0.5 ", 40) || got.Parameters[""].GetStringParam() != "no key" {
		t.Errorf("parameters = %v", got.Parameters)
	}
	framed, err := EncodeFramedGRPCResponse(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := Frame(msg); !reflect.DeepEqual(framed, want) {
		t.Errorf("EncodeFramedGRPCResponse differs from Frame(EncodeGRPCResponse)")
	}
	req, err := EncodeGRPCRequest(&Request{ModelName: "m", Inputs: in.Outputs[:2]})
	if err != nil {
		t.Fatal(err)
	}
	plain, err1 := RewriteGRPCRequest(req, "other", "3")
	framed, err2 := RewriteFramedGRPCRequest(req, "other", "3")
	if err1 != nil || err2 != nil || !reflect.DeepEqual(framed, Frame(plain)) {
		t.Errorf("RewriteFramedGRPCRequest differs from Frame(RewriteGRPCRequest): %v %v", err1, err2)
	}
	var greq pb.ModelInferRequest
	if err := proto.Unmarshal(req, &greq); err != nil || len(greq.Inputs) != 2 || !reflect.DeepEqual(greq.Inputs[1].Contents.IntContents, []int32{-3, 300}) {
		t.Errorf("request: %v %v", &greq, err)
	}
	if _, err := EncodeGRPCResponse(&Response{Outputs: []Tensor{{Name: "x", Datatype: "STR"}}}); err == nil || !strings.Contains(err.Error(), `cannot encode datatype "STR"`) {
		t.Errorf("unknown datatype: %v", err)
	}
}

// TestDecodeGRPCOutputs checks that the outputs-only decoder reads the
// outputs as DecodeGRPCResponse does and refuses what it refuses,
// malformed parameters included, though it keeps no parameters.
func TestDecodeGRPCOutputs(t *testing.T) {
	full := &Response{ModelName: "fraud", ModelVersion: "2", ID: "r1", Parameters: []Param{{"k", "v"}, {"n", int64(3)}},
		Outputs: []Tensor{{Name: "probability", Datatype: "FP32", Shape: []int64{1, 2}, Values: []float64{0.25, 0.75}}}}
	msg, err := EncodeGRPCResponse(full)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeGRPCOutputs(msg)
	if err != nil {
		t.Fatal(err)
	}
	if want := (&Response{Outputs: full.Outputs}); !reflect.DeepEqual(got, want) {
		t.Errorf("DecodeGRPCOutputs = %+v, want %+v", got, want)
	}
	// A parameters entry whose value is not a message, and one whose key
	// has the wrong wire type.
	badValue := append(append([]byte{}, msg...), 0x22, 0x05, 0x0a, 0x01, 'k', 0x12, 0xff)
	badKey := append(append([]byte{}, msg...), 0x22, 0x02, 0x08, 0x01)
	for name, m := range map[string][]byte{"bad value": badValue, "bad key": badKey, "truncated": msg[:len(msg)-3]} {
		_, errFull := DecodeGRPCResponse(m)
		_, errOut := DecodeGRPCOutputs(m)
		if errFull == nil || errOut == nil || errFull.Error() != errOut.Error() {
			t.Errorf("%s: DecodeGRPCResponse: %v; DecodeGRPCOutputs: %v", name, errFull, errOut)
		}
	}
}

// TestOneTensorDecodesInPlace: a message with one tensor keeps it, and a
// shape of up to four dimensions, in the message's own allocation; longer
// shapes, several tensors and shapeless tensors decode as they always did.
func TestOneTensorDecodesInPlace(t *testing.T) {
	tensor := func(name string, shape ...int64) Tensor {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(i) / 4
		}
		return Tensor{Name: name, Datatype: "FP32", Shape: shape, Values: v}
	}
	tests := map[string][]Tensor{
		"one, 2 dims":  {tensor("a", 2, 3)},
		"one, 4 dims":  {tensor("a", 1, 2, 1, 2)},
		"one, 6 dims":  {tensor("a", 1, 1, 2, 1, 1, 2)},
		"one, scalar":  {tensor("a")},
		"two tensors":  {tensor("a", 2, 1), tensor("b", 1, 3)},
		"three, mixed": {tensor("a", 1), tensor("b", 1, 1, 1, 1, 1), tensor("c", 2, 2)},
	}
	for name, ts := range tests {
		t.Run(name, func(t *testing.T) {
			msg, err := EncodeGRPCRequest(&Request{ModelName: "m", Inputs: ts})
			if err != nil {
				t.Fatal(err)
			}
			req, err := ParseGRPCRequest(msg)
			if err != nil {
				t.Fatal(err)
			}
			out, err := EncodeGRPCResponse(&Response{ModelName: "m", Outputs: ts})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := DecodeGRPCResponse(out)
			if err != nil {
				t.Fatal(err)
			}
			for _, got := range [][]Tensor{req.Inputs, resp.Outputs} {
				if len(got) != len(ts) {
					t.Fatalf("%d tensors, want %d", len(got), len(ts))
				}
				for i := range ts {
					if got[i].Name != ts[i].Name || !slices.Equal(got[i].Shape, ts[i].Shape) || !slices.Equal(got[i].Values, ts[i].Values) {
						t.Errorf("tensor %d = %+v, want %+v", i, got[i], ts[i])
					}
				}
			}
		})
	}
}

// TestStringPointerParams: a *string parameter value is encoded exactly as
// the string it points to, in both protocols; a nil one is refused.
func TestStringPointerParams(t *testing.T) {
	a, b := "mean", "fraud.v1,fraud.v2"
	out := []Tensor{{Name: "p", Datatype: "FP32", Shape: []int64{1, 2}, Values: []float64{0.25, 0.75}}}
	plain := &Response{ModelName: "m", ID: "1", Outputs: out,
		Parameters: []Param{{Key: "s", Value: a}, {Key: "n", Value: int64(3)}, {Key: "t", Value: b}}}
	pointed := &Response{ModelName: "m", ID: "1", Outputs: out,
		Parameters: []Param{{Key: "s", Value: &a}, {Key: "n", Value: int64(3)}, {Key: "t", Value: &b}}}
	for _, enc := range []struct {
		name string
		f    func(*Response) ([]byte, error)
	}{{"grpc", EncodeGRPCResponse}, {"framed grpc", EncodeFramedGRPCResponse}, {"json", EncodeJSONResponse}} {
		want, err := enc.f(plain)
		if err != nil {
			t.Fatal(err)
		}
		got, err := enc.f(pointed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %q, want %q", enc.name, got, want)
		}
		var none *string
		if _, err := enc.f(&Response{ModelName: "m", Parameters: []Param{{Key: "x", Value: none}}}); err == nil {
			t.Errorf("%s: a nil *string parameter was encoded", enc.name)
		}
	}
}

// TestInPlaceDecodersAgree: the in-place decoders answer what the copying
// ones do; only the copying ones' answers survive a later change of the
// message.
func TestInPlaceDecodersAgree(t *testing.T) {
	in := []Tensor{{Name: "features", Datatype: "FP32", Shape: []int64{1, 3}, Values: []float64{1, 2, 3}},
		{Name: "mask", Datatype: "INT64", Shape: []int64{1, 3}, Values: []float64{1, 0, 1}}}
	req, err := EncodeGRPCRequest(&Request{ModelName: "fraud", ModelVersion: "2", ID: "req-1", Inputs: in})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := EncodeGRPCResponse(&Response{ModelName: "fraud", ID: "req-1", Outputs: in[:1]})
	if err != nil {
		t.Fatal(err)
	}
	copied, err := ParseGRPCRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := ParseGRPCRequestInPlace(bytes.Clone(req))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shared, copied) {
		t.Fatalf("in place %+v, copied %+v", shared, copied)
	}
	outCopied, err := DecodeGRPCOutputs(resp)
	if err != nil {
		t.Fatal(err)
	}
	outShared, err := DecodeGRPCOutputsInPlace(bytes.Clone(resp))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(outShared, outCopied) {
		t.Fatalf("in place %+v, copied %+v", outShared, outCopied)
	}
	for i := range req {
		req[i] = 'x'
	}
	if copied.ModelName != "fraud" || copied.ID != "req-1" || copied.Inputs[0].Name != "features" {
		t.Fatalf("a copied request changed with its message: %+v", copied)
	}
}

// The filter keeps one buffer per stream for the messages it hands the
// host: the appending encoders must write exactly what the allocating ones
// do, after whatever the buffer holds, and reuse a buffer that is large
// enough.
func TestAppendEncodersReuseTheirBuffer(t *testing.T) {
	resp := &Response{ModelName: "fraud", ModelVersion: "1", Parameters: []Param{{Key: "strategy", Value: "mean"}},
		Outputs: []Tensor{{Name: "probabilities", Datatype: "FP32", Shape: []int64{1, 2}, Values: []float64{0.25, 0.75}}}}
	req, err := EncodeGRPCRequest(&Request{ModelName: "ensemble", ID: "7", Inputs: resp.Outputs})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := RewriteGRPCRequest(req, "fraud-logistic", "2")
	if err != nil {
		t.Fatal(err)
	}
	answer, err := EncodeGRPCResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	encoders := []struct {
		name string
		fn   func(dst []byte) ([]byte, error)
		want []byte
	}{
		{"rewrite", func(dst []byte) ([]byte, error) {
			return AppendRewriteGRPCRequest(dst, req, "fraud-logistic", "2", false)
		}, plain},
		{"framed rewrite", func(dst []byte) ([]byte, error) {
			return AppendRewriteGRPCRequest(dst, req, "fraud-logistic", "2", true)
		}, Frame(plain)},
		{"framed answer", func(dst []byte) ([]byte, error) { return AppendFramedGRPCResponse(dst, resp) }, Frame(answer)},
	}
	for _, e := range encoders {
		t.Run(e.name, func(t *testing.T) {
			got, err := e.fn([]byte("held"))
			if err != nil {
				t.Fatal(err)
			}
			if want := append([]byte("held"), e.want...); !bytes.Equal(got, want) {
				t.Fatalf("after a prefix: %x, want %x", got, want)
			}
			buf := bytes.Repeat([]byte{0xff}, 4*len(e.want)+256) // stale bytes of longer messages
			got, err = e.fn(buf[:0])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, e.want) {
				t.Fatalf("in a used buffer: %x, want %x", got, e.want)
			}
			if &got[0] != &buf[0] {
				t.Error("a buffer large enough was not reused")
			}
		})
	}
	if _, err := AppendRewriteGRPCRequest(nil, []byte{0xff}, "m", "", true); !errors.Is(err, ErrInvalid) {
		t.Errorf("malformed request: %v, want ErrInvalid", err)
	}
}
