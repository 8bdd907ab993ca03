package oip

// The first decoders of this package, on encoding/json: kept as the
// reference the hand-written scanner is fuzzed against (scan.go must
// accept nothing they reject, and decode the same values).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"
)

type jsonTensor struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters json.RawMessage `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data"`
}

type jsonRequest struct {
	ID         string          `json:"id,omitempty"`
	Parameters json.RawMessage `json:"parameters,omitempty"`
	Inputs     []jsonTensor    `json:"inputs"`
	Outputs    json.RawMessage `json:"outputs,omitempty"`
}

type jsonResponse struct {
	ModelName    string          `json:"model_name"`
	ModelVersion string          `json:"model_version,omitempty"`
	ID           string          `json:"id,omitempty"`
	Parameters   json.RawMessage `json:"parameters,omitempty"`
	Outputs      []jsonTensor    `json:"outputs"`
	Error        string          `json:"error,omitempty"`
}

// refParseJSONRequest decodes and checks a REST inference request body.
//
// # Errors
//
// ErrInvalid, naming the input and what is wrong with it.
func refParseJSONRequest(body []byte) (*Request, error) {
	var jr jsonRequest
	if err := json.Unmarshal(body, &jr); err != nil {
		return nil, invalidf("request body: %v", err)
	}
	if len(jr.Inputs) == 0 {
		return nil, invalidf("request body: no inputs")
	}
	r := &Request{ID: jr.ID, Inputs: make([]Tensor, len(jr.Inputs))}
	for i, in := range jr.Inputs {
		t, err := refDecodeJSONTensor(in, fmt.Sprintf("inputs[%d]", i))
		if err != nil {
			return nil, err
		}
		r.Inputs[i] = t
	}
	return r, nil
}

// refDecodeJSONResponse decodes a REST inference response body. A body with
// an "error" member is reported as that error.
func refDecodeJSONResponse(body []byte) (*Response, error) {
	var jr jsonResponse
	if err := json.Unmarshal(body, &jr); err != nil {
		return nil, invalidf("response body: %v", err)
	}
	if jr.Error != "" {
		return nil, fmt.Errorf("model error: %s", jr.Error)
	}
	r := &Response{ModelName: jr.ModelName, ModelVersion: jr.ModelVersion, ID: jr.ID, Outputs: make([]Tensor, len(jr.Outputs))}
	if len(jr.Parameters) > 0 {
		ps, err := refDecodeJSONParams(jr.Parameters)
		if err != nil {
			return nil, err
		}
		r.Parameters = ps
	}
	for i, out := range jr.Outputs {
		t, err := refDecodeJSONTensor(out, fmt.Sprintf("outputs[%d]", i))
		if err != nil {
			return nil, err
		}
		r.Outputs[i] = t
	}
	return r, nil
}

func refDecodeJSONParams(raw json.RawMessage) ([]Param, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, invalidf("parameters: %v", err)
	}
	ps := make([]Param, 0, len(m))
	for k, v := range m {
		ps = append(ps, Param{Key: k, Value: v})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Key < ps[j].Key })
	return ps, nil
}

func refDecodeJSONTensor(in jsonTensor, where string) (Tensor, error) {
	t := Tensor{Name: in.Name, Datatype: in.Datatype, Shape: in.Shape}
	if in.Name == "" {
		return t, invalidf("%s: name is missing", where)
	}
	if !KnownDatatype(in.Datatype) {
		return t, invalidf("tensor %q: unknown datatype %q", in.Name, in.Datatype)
	}
	if in.Shape == nil {
		return t, invalidf("tensor %q: shape is missing", in.Name)
	}
	n, err := elements(in.Name, in.Shape)
	if err != nil {
		return t, err
	}
	if len(in.Data) == 0 {
		return t, invalidf("tensor %q: data is missing", in.Name)
	}
	// Every element takes at least one byte of JSON, which bounds the
	// allocation by what was received.
	if n > len(in.Data) {
		return t, invalidf("tensor %q: shape %v needs %d elements, data holds fewer", in.Name, in.Shape, n)
	}
	var data any
	dec := json.NewDecoder(bytes.NewReader(in.Data))
	dec.UseNumber()
	if err := dec.Decode(&data); err != nil {
		return t, invalidf("tensor %q: data: %v", in.Name, err)
	}
	if in.Datatype == "BYTES" {
		t.Bytes = make([][]byte, 0, n)
	} else {
		t.Values = make([]float64, 0, n)
	}
	if err := refFlatten(&t, data, 0); err != nil {
		return t, err
	}
	if got := t.Len(); got != n {
		return t, invalidf("tensor %q: shape %v needs %d elements, data holds %d", in.Name, in.Shape, n, got)
	}
	return t, nil
}

// refFlatten appends the elements of a (possibly nested) JSON array.
func refFlatten(t *Tensor, v any, depth int) error {
	if depth > 32 {
		return invalidf("tensor %q: data nested deeper than 32 levels", t.Name)
	}
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if err := refFlatten(t, e, depth+1); err != nil {
				return err
			}
		}
		return nil
	case string:
		if t.Datatype != "BYTES" {
			return invalidf("tensor %q: string element in %s data", t.Name, t.Datatype)
		}
		t.Bytes = append(t.Bytes, []byte(x))
		return nil
	case bool:
		if t.Datatype != "BOOL" {
			return invalidf("tensor %q: boolean element in %s data", t.Name, t.Datatype)
		}
		t.Values = append(t.Values, boolValue(x))
		return nil
	case json.Number:
		if t.Datatype == "BOOL" || t.Datatype == "BYTES" {
			return invalidf("tensor %q: number element in %s data", t.Name, t.Datatype)
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return invalidf("tensor %q: element %s: %v", t.Name, x, err)
		}
		if !strings.HasPrefix(t.Datatype, "FP") && !strings.HasPrefix(t.Datatype, "BF") && f != math.Trunc(f) {
			return invalidf("tensor %q: element %s is not an integer for %s", t.Name, x, t.Datatype)
		}
		if t.Datatype == "FP32" {
			// The value the sender's float32 printed as, not its nearest
			// float64.
			f = float64(float32(f))
		}
		t.Values = append(t.Values, f)
		return nil
	case nil:
		return invalidf("tensor %q: null element", t.Name)
	}
	return invalidf("tensor %q: object element in data", t.Name)
}

// caseVariantKeys reports whether body spells a key the decoders know in
// another case: encoding/json matches keys case-insensitively and the
// scanner exactly, a difference accepted on purpose.
func caseVariantKeys(body []byte) bool {
	lower := bytes.ToLower(body)
	for _, k := range []string{"id", "inputs", "outputs", "parameters", "name", "shape", "datatype", "data",
		"model_name", "model_version", "error"} {
		q := []byte(`"` + k + `"`)
		if bytes.Count(lower, q) != bytes.Count(body, q) {
			return true
		}
	}
	return false
}

func sameTensors(a, b []Tensor) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.Datatype != y.Datatype || fmt.Sprint(x.Shape) != fmt.Sprint(y.Shape) ||
			len(x.Values) != len(y.Values) || len(x.Bytes) != len(y.Bytes) {
			return false
		}
		for k := range x.Values {
			if x.Values[k] != y.Values[k] && !(math.IsNaN(x.Values[k]) && math.IsNaN(y.Values[k])) {
				return false
			}
		}
		for k := range x.Bytes {
			if !bytes.Equal(x.Bytes[k], y.Bytes[k]) {
				return false
			}
		}
	}
	return true
}

// FuzzScannerAgainstReference checks the scanner against the encoding/json
// decoders: whatever it accepts, they accept with the same values.
func FuzzScannerAgainstReference(f *testing.F) {
	f.Add([]byte(`{"id":"a\u00e9\ud83d\ude00","inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1e-3,-0]}]}`), false)
	f.Add([]byte(`{"inputs":[{"name":"s","shape":[1,1],"datatype":"BYTES","data":[["\"q\\\/"]]}],"outputs":[{"name":"y"}]}`), false)
	f.Add([]byte(`{"model_name":"m","parameters":{"a":1,"b":"x","c":true,"d":{"e":[1]}},"outputs":[{"name":"y","shape":[1],"datatype":"INT64","data":[3]}]}`), true)
	f.Add([]byte(`{"error":"model \"m\" not found"}`), true)
	f.Fuzz(func(t *testing.T, body []byte, response bool) {
		if caseVariantKeys(body) {
			return
		}
		if response {
			got, err := DecodeJSONResponse(body)
			if err != nil {
				return
			}
			want, rerr := refDecodeJSONResponse(body)
			if rerr != nil {
				t.Fatalf("scanner accepted what encoding/json rejects (%v): %q", rerr, body)
			}
			if got.ModelName != want.ModelName || got.ModelVersion != want.ModelVersion || got.ID != want.ID || !sameTensors(got.Outputs, want.Outputs) {
				t.Fatalf("decoders differ on %q:\n scanner %+v\n    json %+v", body, got, want)
			}
			return
		}
		got, err := ParseJSONRequest(body)
		if err != nil {
			return
		}
		want, rerr := refParseJSONRequest(body)
		if rerr != nil {
			t.Fatalf("scanner accepted what encoding/json rejects (%v): %q", rerr, body)
		}
		if got.ID != want.ID || !sameTensors(got.Inputs, want.Inputs) {
			t.Fatalf("decoders differ on %q:\n scanner %+v\n    json %+v", body, got, want)
		}
	})
}

// FuzzCheckMatchesParse: CheckJSONRequest accepts exactly what
// ParseJSONRequest accepts, with the same names, datatypes and shapes.
func FuzzCheckMatchesParse(f *testing.F) {
	f.Add([]byte(`{"id":"a","inputs":[{"name":"x","shape":[2],"datatype":"INT8","data":[1,1.5]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[3],"datatype":"FP16","data":[1e400,123456789012345678,-0.5]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"b","shape":[1],"datatype":"BOOL","data":[true]},{"name":"s","shape":[1],"datatype":"BYTES","data":["x"]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		full, ferr := ParseJSONRequest(body)
		check, cerr := CheckJSONRequest(body)
		if (ferr == nil) != (cerr == nil) {
			t.Fatalf("Parse error %v, Check error %v on %q", ferr, cerr, body)
		}
		if ferr != nil {
			return
		}
		if full.ID != check.ID || len(full.Inputs) != len(check.Inputs) {
			t.Fatalf("Parse %+v, Check %+v", full, check)
		}
		for i := range full.Inputs {
			a, b := full.Inputs[i], check.Inputs[i]
			if a.Name != b.Name || a.Datatype != b.Datatype || fmt.Sprint(a.Shape) != fmt.Sprint(b.Shape) || b.Values != nil || b.Bytes != nil {
				t.Fatalf("input %d: Parse %+v, Check %+v", i, a, b)
			}
		}
	})
}
