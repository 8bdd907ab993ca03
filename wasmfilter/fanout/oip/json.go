package oip

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Request is an inference request: the model asked for and its inputs.
type Request struct {
	ModelName    string
	ModelVersion string
	ID           string
	Inputs       []Tensor
}

// Response is an inference response.
type Response struct {
	ModelName    string
	ModelVersion string
	ID           string
	Parameters   []Param
	Outputs      []Tensor
}

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

// InferPath splits a REST inference path, /v2/models/{m}/infer or
// /v2/models/{m}/versions/{v}/infer (a query string is ignored).
func InferPath(path string) (model, version string, ok bool) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	rest, found := strings.CutPrefix(path, "/v2/models/")
	if !found {
		return "", "", false
	}
	rest, found = strings.CutSuffix(rest, "/infer")
	if !found || rest == "" {
		return "", "", false
	}
	if m, v, hasVersion := strings.Cut(rest, "/versions/"); hasVersion {
		if m == "" || v == "" || strings.Contains(v, "/") || strings.Contains(m, "/") {
			return "", "", false
		}
		return m, v, true
	}
	if strings.Contains(rest, "/") {
		return "", "", false
	}
	return rest, "", true
}

// InferPathFor is the REST inference path of a model (and version).
func InferPathFor(model, version string) string {
	if version == "" {
		return "/v2/models/" + model + "/infer"
	}
	return "/v2/models/" + model + "/versions/" + version + "/infer"
}

// ParseJSONRequest decodes and checks a REST inference request body.
//
// # Errors
//
// ErrInvalid, naming the input and what is wrong with it.
func ParseJSONRequest(body []byte) (*Request, error) {
	var jr jsonRequest
	if err := json.Unmarshal(body, &jr); err != nil {
		return nil, invalidf("request body: %v", err)
	}
	if len(jr.Inputs) == 0 {
		return nil, invalidf("request body: no inputs")
	}
	r := &Request{ID: jr.ID, Inputs: make([]Tensor, len(jr.Inputs))}
	for i, in := range jr.Inputs {
		t, err := decodeJSONTensor(in, fmt.Sprintf("inputs[%d]", i))
		if err != nil {
			return nil, err
		}
		r.Inputs[i] = t
	}
	return r, nil
}

// DecodeJSONResponse decodes a REST inference response body. A body with
// an "error" member is reported as that error.
func DecodeJSONResponse(body []byte) (*Response, error) {
	var jr jsonResponse
	if err := json.Unmarshal(body, &jr); err != nil {
		return nil, invalidf("response body: %v", err)
	}
	if jr.Error != "" {
		return nil, fmt.Errorf("model error: %s", jr.Error)
	}
	r := &Response{ModelName: jr.ModelName, ModelVersion: jr.ModelVersion, ID: jr.ID, Outputs: make([]Tensor, len(jr.Outputs))}
	if len(jr.Parameters) > 0 {
		ps, err := decodeJSONParams(jr.Parameters)
		if err != nil {
			return nil, err
		}
		r.Parameters = ps
	}
	for i, out := range jr.Outputs {
		t, err := decodeJSONTensor(out, fmt.Sprintf("outputs[%d]", i))
		if err != nil {
			return nil, err
		}
		r.Outputs[i] = t
	}
	return r, nil
}

func decodeJSONParams(raw json.RawMessage) ([]Param, error) {
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

func decodeJSONTensor(in jsonTensor, where string) (Tensor, error) {
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
	if err := flatten(&t, data, 0); err != nil {
		return t, err
	}
	if got := t.Len(); got != n {
		return t, invalidf("tensor %q: shape %v needs %d elements, data holds %d", in.Name, in.Shape, n, got)
	}
	return t, nil
}

// flatten appends the elements of a (possibly nested) JSON array.
func flatten(t *Tensor, v any, depth int) error {
	if depth > 32 {
		return invalidf("tensor %q: data nested deeper than 32 levels", t.Name)
	}
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if err := flatten(t, e, depth+1); err != nil {
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

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// EncodeJSONRequest writes a REST inference request for inputs.
func EncodeJSONRequest(id string, inputs []Tensor) ([]byte, error) {
	b := []byte(`{`)
	if id != "" {
		b = append(b, `"id":`...)
		b = appendJSONString(b, id)
		b = append(b, ',')
	}
	b = append(b, `"inputs":`...)
	b, err := appendJSONTensors(b, inputs)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// EncodeJSONResponse writes a REST inference response.
func EncodeJSONResponse(r *Response) ([]byte, error) {
	b := []byte(`{"model_name":`)
	b = appendJSONString(b, r.ModelName)
	if r.ModelVersion != "" {
		b = append(b, `,"model_version":`...)
		b = appendJSONString(b, r.ModelVersion)
	}
	if r.ID != "" {
		b = append(b, `,"id":`...)
		b = appendJSONString(b, r.ID)
	}
	if len(r.Parameters) > 0 {
		b = append(b, `,"parameters":{`...)
		for i, p := range r.Parameters {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, p.Key)
			b = append(b, ':')
			var err error
			if b, err = appendJSONScalar(b, p.Value); err != nil {
				return nil, fmt.Errorf("parameter %q: %w", p.Key, err)
			}
		}
		b = append(b, '}')
	}
	b = append(b, `,"outputs":`...)
	b, err := appendJSONTensors(b, r.Outputs)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// EncodeJSONError writes the protocol's error body.
func EncodeJSONError(msg string) []byte {
	b := []byte(`{"error":`)
	b = appendJSONString(b, msg)
	return append(b, '}')
}

func appendJSONTensors(b []byte, ts []Tensor) ([]byte, error) {
	b = append(b, '[')
	for i, t := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, t.Name)
		b = append(b, `,"datatype":`...)
		b = appendJSONString(b, t.Datatype)
		b = append(b, `,"shape":[`...)
		for k, d := range t.Shape {
			if k > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, `],"data":[`...)
		if t.Datatype == "BYTES" {
			for k, e := range t.Bytes {
				if k > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, string(e))
			}
		} else {
			for k, v := range t.Values {
				if k > 0 {
					b = append(b, ',')
				}
				var err error
				if b, err = appendJSONValue(b, t.Datatype, v); err != nil {
					return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
				}
			}
		}
		b = append(b, "]}"...)
	}
	return append(b, ']'), nil
}

func appendJSONValue(b []byte, dt string, v float64) ([]byte, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil, fmt.Errorf("%v cannot be written in JSON", v)
	}
	switch dt {
	case "BOOL":
		return strconv.AppendBool(b, v != 0), nil
	case "FP32", "FP16", "BF16":
		return strconv.AppendFloat(b, v, 'g', -1, 32), nil
	case "FP64":
		return strconv.AppendFloat(b, v, 'g', -1, 64), nil
	}
	return strconv.AppendFloat(b, math.Trunc(v), 'f', 0, 64), nil
}

func appendJSONScalar(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return appendJSONString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case float64:
		return appendJSONValue(b, "FP64", x)
	}
	return nil, fmt.Errorf("unsupported parameter type %T", v)
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes s as a JSON string, escaping what JSON requires
// and HTML-sensitive characters, and replacing invalid UTF-8.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r < 0x20 || r == '<' || r == '>' || r == '&' || r == 0x2028 || r == 0x2029:
			b = append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
		default:
			b = append(b, string(r)...)
		}
	}
	return append(b, '"')
}
