package oip

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
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
	if s, ok := stringValue(v); ok {
		return appendJSONString(b, s), nil
	}
	switch x := v.(type) {
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
		case r < utf8.RuneSelf:
			b = append(b, byte(r))
		default:
			// An invalid byte arrives as utf8.RuneError, written as U+FFFD.
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}
