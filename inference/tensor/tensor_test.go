package tensor

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/runtime"
)

// samples holds one tensor of every datatype that runtimes evaluate.
var samples = []runtime.Tensor{
	{Name: "f32", Datatype: runtime.FP32, Shape: []int64{2, 2}, Data: []float32{1.5, -2, 3.25, float32(math.Inf(1))}},
	{Name: "f64", Datatype: runtime.FP64, Shape: []int64{3}, Data: []float64{1e300, -0.5, 0}},
	{Name: "i64", Datatype: runtime.Int64, Shape: []int64{2}, Data: []int64{math.MinInt64, math.MaxInt64}},
	{Name: "i32", Datatype: runtime.Int32, Shape: []int64{2}, Data: []int32{-7, 1 << 30}},
	{Name: "i16", Datatype: runtime.Int16, Shape: []int64{2}, Data: []int16{-300, 300}},
	{Name: "i8", Datatype: runtime.Int8, Shape: []int64{3}, Data: []int8{-128, 0, 127}},
	{Name: "u64", Datatype: runtime.Uint64, Shape: []int64{1}, Data: []uint64{math.MaxUint64}},
	{Name: "u32", Datatype: runtime.Uint32, Shape: []int64{1}, Data: []uint32{math.MaxUint32}},
	{Name: "u16", Datatype: runtime.Uint16, Shape: []int64{2}, Data: []uint16{0, 65535}},
	{Name: "u8", Datatype: runtime.Uint8, Shape: []int64{2}, Data: []uint8{0, 255}},
	{Name: "b", Datatype: runtime.Bool, Shape: []int64{3}, Data: []bool{true, false, true}},
	{Name: "s", Datatype: runtime.Bytes, Shape: []int64{1, 3}, Data: [][]byte{[]byte("héllo"), {}, {0, 1, 2}}},
	{Name: "empty", Datatype: runtime.FP32, Shape: []int64{0, 4}, Data: []float32{}},
}

func TestTypedContentsRoundTrip(t *testing.T) {
	for _, want := range samples {
		t.Run(want.Name, func(t *testing.T) {
			out, err := EncodeContents(want)
			if err != nil {
				t.Fatal(err)
			}
			in := &pb.ModelInferRequest_InferInputTensor{Name: out.Name, Datatype: out.Datatype, Shape: out.Shape, Contents: out.Contents}
			got, err := DecodeContents(in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestRawContentsRoundTrip(t *testing.T) {
	for _, want := range samples {
		t.Run(want.Name, func(t *testing.T) {
			out, raw, err := EncodeRaw(want)
			if err != nil {
				t.Fatal(err)
			}
			// Copy, as the wire does, so the decoded tensor cannot share
			// memory with the one encoded.
			raw = append([]byte(nil), raw...)
			got, err := DecodeRaw(out.Name, runtime.Datatype(out.Datatype), out.Shape, raw)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestRawLayoutIsTritons(t *testing.T) {
	// FP32 little-endian, and BYTES with 4-byte little-endian length
	// prefixes, byte for byte.
	_, raw, err := EncodeRaw(runtime.Tensor{Name: "x", Datatype: runtime.FP32, Shape: []int64{1}, Data: []float32{1}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0, 0, 0x80, 0x3f}; !reflect.DeepEqual(raw, want) {
		t.Errorf("FP32 1.0 = % x, want % x", raw, want)
	}
	_, raw, err = EncodeRaw(runtime.Tensor{Name: "s", Datatype: runtime.Bytes, Shape: []int64{2}, Data: [][]byte{[]byte("ab"), []byte("c")}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{2, 0, 0, 0, 'a', 'b', 1, 0, 0, 0, 'c'}; !reflect.DeepEqual(raw, want) {
		t.Errorf("BYTES = % x, want % x", raw, want)
	}
}

func TestUnalignedRawIsCopied(t *testing.T) {
	buf := make([]byte, 9)
	binary.LittleEndian.PutUint32(buf[1:], math.Float32bits(2.5))
	binary.LittleEndian.PutUint32(buf[5:], math.Float32bits(-1))
	got, err := DecodeRaw("x", runtime.FP32, []int64{2}, buf[1:])
	if err != nil {
		t.Fatal(err)
	}
	if d := got.Data.([]float32); d[0] != 2.5 || d[1] != -1 {
		t.Errorf("got %v", d)
	}
}

func TestDecodeInputsErrors(t *testing.T) {
	fp32 := func(shape []int64, v ...float32) *pb.ModelInferRequest_InferInputTensor {
		return &pb.ModelInferRequest_InferInputTensor{Name: "x", Datatype: "FP32", Shape: shape, Contents: &pb.InferTensorContents{Fp32Contents: v}}
	}
	tests := map[string]struct {
		req  *pb.ModelInferRequest
		want string
	}{
		"too few elements": {
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32([]int64{2, 2}, 1, 2, 3)}},
			`input "x": shape [2 2] needs 4 elements, contents hold 3`},
		"negative dimension": {
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32([]int64{-1, 2}, 1, 2)}},
			`input "x": shape [-1 2] has a negative dimension`},
		"huge shape": {
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32([]int64{1 << 20, 1 << 20}, 1)}},
			`input "x": shape [1048576 1048576] holds more than`},
		"wrong typed field": {
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "INT64", Shape: []int64{1}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1}}}}},
			`input "x": shape [1] needs 1 elements, contents hold 0`},
		"unknown datatype": {
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP128", Shape: []int64{1}}}},
			`input "x": unknown datatype "FP128"`},
		"int8 out of range": {
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "INT8", Shape: []int64{1}, Contents: &pb.InferTensorContents{IntContents: []int32{200}}}}},
			`input "x": element 0: 200 is out of range`},
		"raw count mismatch": {
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1}}, {Name: "z", Datatype: "FP32", Shape: []int64{1}}}, RawInputContents: [][]byte{{0, 0, 0, 0}}},
			`raw_input_contents has 1 entries for 2 inputs`},
		"raw size mismatch": {
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{2}}}, RawInputContents: [][]byte{{0, 0, 0, 0}}},
			`input "x": shape [2] needs 8 bytes of FP32, raw contents hold 4`},
		"raw and typed": {
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32([]int64{1}, 1)}, RawInputContents: [][]byte{{0, 0, 0, 0}}},
			`input "x": has both contents and raw_input_contents`},
		"raw bytes overrun": {
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "s", Datatype: "BYTES", Shape: []int64{1}}}, RawInputContents: [][]byte{{9, 0, 0, 0, 'a'}}},
			`input "s": element 0: length 9 runs past the end`},
		"raw bool not 0/1": {
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "b", Datatype: "BOOL", Shape: []int64{1}}}, RawInputContents: [][]byte{{7}}},
			`input "b": element 0: BOOL byte 7`},
		"fp16 typed": {
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "h", Datatype: "FP16", Shape: []int64{1}}}},
			`input "h": FP16 has no typed contents`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeInputs(tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if !errors.Is(err, runtime.ErrInvalidInput) {
				t.Errorf("%v does not wrap runtime.ErrInvalidInput", err)
			}
		})
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, want := range samples {
		if want.Name == "f32" {
			continue // holds +Inf, which JSON cannot carry; see TestJSONRejectsNaNOutput
		}
		t.Run(want.Name, func(t *testing.T) {
			out, err := EncodeJSON(want)
			if err != nil {
				t.Fatal(err)
			}
			if want.Datatype == runtime.Bytes {
				// BYTES travel as JSON strings; raw bytes that are not UTF-8
				// cannot survive, so compare only the valid ones.
				want = runtime.Tensor{Name: "s", Datatype: runtime.Bytes, Shape: []int64{2}, Data: [][]byte{[]byte("héllo"), []byte("")}}
				if out, err = EncodeJSON(want); err != nil {
					t.Fatal(err)
				}
			}
			got, err := DecodeJSON(JSONInput{Name: out.Name, Shape: out.Shape, Datatype: out.Datatype, Data: out.Data})
			if err != nil {
				t.Fatalf("decode %s: %v", out.Data, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	got, err := DecodeJSON(JSONInput{Name: "x", Datatype: "FP32", Shape: []int64{2, 2}, Data: json.RawMessage(" [[1, 2.5] ,\n [null, -4e-1]] ")})
	if err != nil {
		t.Fatal(err)
	}
	d := got.Data.([]float32)
	if d[0] != 1 || d[1] != 2.5 || !math.IsNaN(float64(d[2])) || d[3] != -0.4 {
		t.Errorf("nested data with null as missing: got %v", d)
	}
	errs := map[string]JSONInput{
		`needs 3 elements, data holds 2`:              {Name: "x", Datatype: "FP32", Shape: []int64{3}, Data: json.RawMessage(`[1,2]`)},
		`element 1: "\"a\"" is not a valid`:           {Name: "x", Datatype: "FP32", Shape: []int64{2}, Data: json.RawMessage(`[1,"a"]`)},
		`"NaN" is not a JSON value`:                   {Name: "x", Datatype: "FP64", Shape: []int64{1}, Data: json.RawMessage(`[NaN]`)},
		`element 0: "true" is not a valid`:            {Name: "x", Datatype: "FP64", Shape: []int64{1}, Data: json.RawMessage(`[true]`)},
		`element 0: "1.5" is not a valid`:             {Name: "x", Datatype: "INT64", Shape: []int64{1}, Data: json.RawMessage(`[1.5]`)},
		`element 0: "1" is not a valid`:               {Name: "x", Datatype: "BOOL", Shape: []int64{1}, Data: json.RawMessage(`[1]`)},
		`ragged rows: arrays at depth 2 hold 2 and 1`: {Name: "x", Datatype: "INT32", Shape: []int64{3}, Data: json.RawMessage(`[[1,2],[3]]`)},
		`ragged rows: values at depths 2 and 1`:       {Name: "x", Datatype: "INT32", Shape: []int64{3}, Data: json.RawMessage(`[[1,2],3]`)},
		`ragged rows: an array at depth 2`:            {Name: "x", Datatype: "INT32", Shape: []int64{3}, Data: json.RawMessage(`[1,[2,3]]`)},
		`data holds more`:                             {Name: "x", Datatype: "INT32", Shape: []int64{2}, Data: json.RawMessage(`[1,2,3,4]`)},
		`data after the array`:                        {Name: "x", Datatype: "INT32", Shape: []int64{1}, Data: json.RawMessage(`[1] 2`)},
		`element 0: "300" is not a valid`:             {Name: "x", Datatype: "UINT8", Shape: []int64{1}, Data: json.RawMessage(`[300]`)},
		`trailing comma`:                              {Name: "x", Datatype: "INT32", Shape: []int64{1}, Data: json.RawMessage(`[1,]`)},
		`want a JSON array`:                           {Name: "x", Datatype: "INT32", Shape: []int64{1}, Data: json.RawMessage(`1`)},
		`data is missing`:                             {Name: "x", Datatype: "INT32", Shape: []int64{1}},
		`unexpected end of input`:                     {Name: "x", Datatype: "INT32", Shape: []int64{1}, Data: json.RawMessage(`[[1]`)},
		`FP16 cannot be sent as JSON`:                 {Name: "x", Datatype: "FP16", Shape: []int64{1}, Data: json.RawMessage(`[1]`)},
		`want ',' or ']', got '2'`:                    {Name: "x", Datatype: "INT32", Shape: []int64{2}, Data: json.RawMessage(`[1 2]`)},
		`shape [4] needs 4 elements, data h`:          {Name: "x", Datatype: "INT32", Shape: []int64{4}, Data: json.RawMessage(`[1]    `)},
	}
	for want, in := range errs {
		_, err := DecodeJSON(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `input "x"`) {
			t.Errorf("%s: got %v, want %q naming the input", in.Data, err, want)
		}
	}
}

func TestJSONRejectsNaNOutput(t *testing.T) {
	_, err := EncodeJSON(runtime.Tensor{Name: "p", Datatype: runtime.FP32, Shape: []int64{1}, Data: []float32{float32(math.NaN())}})
	if err == nil || !strings.Contains(err.Error(), `output "p": element 0 is NaN`) {
		t.Errorf("got %v", err)
	}
}

func FuzzDecodeRaw(f *testing.F) {
	for _, s := range samples {
		_, raw, _ := EncodeRaw(s)
		f.Add(string(s.Datatype), int64(s.Elements()), append([]byte(nil), raw...))
	}
	f.Add("BYTES", int64(3), []byte{1, 0, 0, 0, 'a', 0xff, 0xff, 0xff, 0xff})
	f.Add("BYTES", int64(1<<27), []byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, dt string, n int64, raw []byte) {
		got, err := DecodeRaw("x", runtime.Datatype(dt), []int64{n}, raw)
		if err != nil {
			if !errors.Is(err, runtime.ErrInvalidInput) {
				t.Fatalf("error %v is not an input error", err)
			}
			return
		}
		// What decodes re-encodes to the same bytes.
		_, again, err := EncodeRaw(got)
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(raw) {
			t.Fatalf("re-encoded % x, decoded from % x", again, raw)
		}
	})
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add("FP32", int64(4), []byte(`[[1,2],[3,null]]`))
	f.Add("BYTES", int64(2), []byte(`["a\"b", "\u00e9"]`))
	f.Add("BOOL", int64(1), []byte(`[true]`))
	f.Add("INT8", int64(2), []byte(`[[-128],[[127]]]`))
	f.Add("UINT64", int64(1), []byte(`[18446744073709551615]`))
	f.Add("FP64", int64(1), []byte(`[1e400]`))
	f.Fuzz(func(t *testing.T, dt string, n int64, data []byte) {
		got, err := DecodeJSON(JSONInput{Name: "x", Datatype: dt, Shape: []int64{n}, Data: data})
		if err != nil {
			if !errors.Is(err, runtime.ErrInvalidInput) {
				t.Fatalf("error %v is not an input error", err)
			}
			return
		}
		if got.Elements() != n {
			t.Fatalf("decoded %d elements for shape [%d]", got.Elements(), n)
		}
		// What decodes is valid JSON in the protocol's sense.
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("accepted invalid JSON %q: %v", data, err)
		}
	})
}
