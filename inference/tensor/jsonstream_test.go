package tensor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/inference/runtime"
)

// failReader fails the test if the decoder reads from it: what comes before
// it must have been enough to decide.
type failReader struct{ t *testing.T }

func (f failReader) Read([]byte) (int, error) {
	f.t.Error("the decoder read past the point where it could decide")
	return 0, errors.New("read past the header")
}

// endless repeats "1," forever: a data array that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = "1,"[i%2]
	}
	return len(p) - len(p)%2, nil
}

func TestDecodeJSONRequest(t *testing.T) {
	body := `{"id":"r1","parameters":{"a":[1,{"b":2}]},"inputs":[
		{"name":"x","shape":[2,2],"datatype":"FP32","parameters":{"p":1},"data":[[1,2],[3,null]]},
		{"data":["a","b"],"datatype":"BYTES","name":"s","shape":[2]}],
		"outputs":[{"name":"y","parameters":{"binary_data":false}},{"name":"z"}]}`
	var reserved []int64
	var checked []string
	req, err := DecodeJSONRequest(strings.NewReader(body), DecodeOptions{
		BodyBytes: int64(len(body)),
		Check: func(name string, dt runtime.Datatype, shape []int64) error {
			checked = append(checked, name)
			return nil
		},
		Reserve: func(n int64) error { reserved = append(reserved, n); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if req.ID != "r1" || len(req.Inputs) != 2 || strings.Join(req.Outputs, ",") != "y,z" {
		t.Fatalf("got %+v", req)
	}
	if d := req.Inputs[0].Data.([]float32); len(d) != 4 || d[2] != 3 || d[3] == d[3] {
		t.Errorf("x = %v, want [1 2 3 NaN]", d)
	}
	if d := req.Inputs[1].Data.([][]byte); string(d[0]) != "a" || string(d[1]) != "b" {
		t.Errorf("s = %q", d)
	}
	// x reserves its 16 bytes; s, whose data came first, reserves the body
	// for the flat copy, then its slice headers and (BYTES) the body again
	// for the strings' contents.
	if strings.Join(checked, ",") != "x,s" || len(reserved) != 3 || reserved[0] != 16 || reserved[1] != int64(len(body)) || reserved[2] != 48+int64(len(body)) {
		t.Errorf("checked %v, reserved %v", checked, reserved)
	}
}

func TestDecodeJSONRequestStopsEarly(t *testing.T) {
	errRefused := errors.New("refused")
	header := `{"inputs":[{"name":"x","shape":[10000000,4],"datatype":"FP32","data":`
	tests := map[string]struct {
		body    io.Reader
		opts    DecodeOptions
		wantErr string
	}{
		"shape refused before any data is read": {
			body: io.MultiReader(strings.NewReader(header), failReader{t}),
			opts: DecodeOptions{BodyBytes: 1 << 40, Check: func(string, runtime.Datatype, []int64) error { return errRefused }},
		},
		"reservation refused before any data is read": {
			body: io.MultiReader(strings.NewReader(header), failReader{t}),
			opts: DecodeOptions{BodyBytes: 1 << 40, Reserve: func(n int64) error {
				if n != 10000000*4*4 {
					t.Errorf("reserved %d bytes, want the tensor's %d", n, 10000000*4*4)
				}
				return errRefused
			}},
		},
		"shape larger than the body could hold": {
			body:    io.MultiReader(strings.NewReader(header), failReader{t}),
			opts:    DecodeOptions{BodyBytes: 1000},
			wantErr: `input "x": shape [10000000 4] needs 40000000 elements, more than the 1000 bytes`,
		},
		"more elements than the shape stops at the first extra one": {
			body:    io.MultiReader(strings.NewReader(`{"inputs":[{"name":"x","shape":[3],"datatype":"INT64","data":[`), endless{}),
			wantErr: `input "x": shape [3] needs 3 elements, data holds more`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeJSONRequest(tc.body, tc.opts)
			switch {
			case tc.wantErr == "" && !errors.Is(err, errRefused):
				t.Errorf("got %v, want the refusal", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, runtime.ErrInvalidInput)):
				t.Errorf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestDecodeJSONRequestErrors(t *testing.T) {
	tests := map[string]string{
		`[]`: `the request: want '{'`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]} x`:                  `data after the request`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"inputs":[]}`:        `"inputs" is given twice`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}`:                               `input "x": data is missing`,
		`{"inputs":[{"name":"x","datatype":"FP32","data":[1]}]}`:                                `input "x": shape is missing`,
		`{"inputs":[{"name":"x","shape":[1],"data":[1]}]}`:                                      `input "x": datatype is missing`,
		`{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3]]}]}`:          `input "x": data: ragged rows`,
		`{"inputs":[{"data":[[1,2],[3]],"name":"x","shape":[2,2],"datatype":"FP32"}]}`:          `inputs[0]: input "": data: ragged rows`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1],"data":[2]}]}`:         `input "x": data is given twice`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"outputs":[{"name":`: `unexpected end of input`,
		`{"outputs":[]}`: `request has no inputs`,
		`{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}`:                                                              `input "x": shape [-1] has a negative dimension`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"FP16","data":[1]}]}`:                                                               `input "x": FP16 cannot be sent as JSON`,
		`{"parameters":` + strings.Repeat("[", 100000) + `}`:                                                                               `nested deeper than 64 levels`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":` + strings.Repeat("[", 100) + `1` + strings.Repeat("]", 100) + `}]}`: `input "x": data: nested deeper than 64 levels`,
		`{"id":"` + strings.Repeat("a", 100000) + `","inputs":[]}`:                                                                         `string longer than 65536 bytes`,
	}
	for body, want := range tests {
		_, err := DecodeJSONRequest(strings.NewReader(body), DecodeOptions{BodyBytes: int64(len(body))})
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, runtime.ErrInvalidInput) {
			t.Errorf("%s: got %v, want %q", body, err, want)
		}
	}
}

// FuzzDecodeJSONRequest: whatever the body, the decoder returns a request
// or an input error, never panics, and accepts only valid JSON.
func FuzzDecodeJSONRequest(f *testing.F) {
	f.Add([]byte(`{"id":"a","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,null]]}],"outputs":[{"name":"y"}]}`))
	f.Add([]byte(`{"inputs":[{"data":["a\"b","\u00e9"],"datatype":"BYTES","name":"s","shape":[2]}],"parameters":{"k":[1,{"v":true}]}}`))
	f.Add([]byte(`{"inputs":[{"name":"b","shape":[1],"datatype":"BOOL","data":[true]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[3],"datatype":"INT8","data":[[1],[2,3]]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeJSONRequest(bytes.NewReader(body), DecodeOptions{BodyBytes: int64(len(body))})
		if err != nil {
			if !errors.Is(err, runtime.ErrInvalidInput) {
				t.Fatalf("error %v is not an input error", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		for _, in := range req.Inputs {
			if n, _ := Elements(in.Name, in.Shape); int64(n) != in.Elements() {
				t.Fatalf("input %q: %d elements for shape %v", in.Name, in.Elements(), in.Shape)
			}
		}
	})
}

// BenchmarkDecodeJSONRequest decodes a 1 MB FP32 request body.
func BenchmarkDecodeJSONRequest(b *testing.B) {
	const row = "[0.123,0.456,0.789,0.012]"
	rows := (1 << 20) / (len(row) + 1)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, `{"inputs": [{"name": "x", "shape": [%d, 4], "datatype": "FP32", "data": [`, rows)
	for i := range rows {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(row)
	}
	buf.WriteString("]}]}")
	body := buf.Bytes()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeJSONRequest(bytes.NewReader(body), DecodeOptions{BodyBytes: int64(len(body))}); err != nil {
			b.Fatal(err)
		}
	}
}
