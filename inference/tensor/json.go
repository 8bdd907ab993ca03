package tensor

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/maestro-ml/maestro/inference/runtime"
)

// JSONRequest is the REST inference request body of the protocol.
type JSONRequest struct {
	ID         string                `json:"id,omitempty"`
	Parameters map[string]any        `json:"parameters,omitempty"`
	Inputs     []JSONInput           `json:"inputs"`
	Outputs    []JSONRequestedOutput `json:"outputs,omitempty"`
}

// JSONInput is one input tensor; Data is the flat or nested row-major
// array of its elements.
type JSONInput struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data"`
}

// JSONRequestedOutput names an output the caller wants.
type JSONRequestedOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

// JSONResponse is the REST inference response body.
type JSONResponse struct {
	ModelName    string         `json:"model_name"`
	ModelVersion string         `json:"model_version,omitempty"`
	ID           string         `json:"id,omitempty"`
	Parameters   map[string]any `json:"parameters,omitempty"`
	Outputs      []JSONOutput   `json:"outputs"`
}

// JSONOutput is one output tensor; Data holds its elements as a flat
// JSON array.
type JSONOutput struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data"`
}

// DecodeJSON decodes one REST input tensor. Data may be nested arrays; its
// elements are taken in order, as the protocol allows.
func DecodeJSON(in JSONInput) (runtime.Tensor, error) {
	dt := runtime.Datatype(in.Datatype)
	n, err := Elements(in.Name, in.Shape)
	if err != nil {
		return runtime.Tensor{}, err
	}
	if len(in.Data) == 0 {
		return runtime.Tensor{}, invalid(in.Name, "data is missing")
	}
	var toks [][]byte
	// Every element takes at least one byte of JSON, which bounds the
	// allocation by what was actually received.
	if n > len(in.Data) {
		return runtime.Tensor{}, invalid(in.Name, "shape %v needs %d elements, data holds fewer", in.Shape, n)
	}
	toks = make([][]byte, 0, n)
	toks, err = flatten(in.Data, toks)
	if err != nil {
		return runtime.Tensor{}, invalid(in.Name, "data: %v", err)
	}
	if len(toks) != n {
		return runtime.Tensor{}, invalid(in.Name, "shape %v needs %d elements, data holds %d", in.Shape, n, len(toks))
	}
	t := runtime.Tensor{Name: in.Name, Datatype: dt, Shape: in.Shape}
	switch dt {
	case runtime.FP32:
		t.Data, err = parseAll(in.Name, toks, func(s string) (float32, error) {
			f, err := parseFloat(s, 32)
			return float32(f), err
		})
	case runtime.FP64:
		t.Data, err = parseAll(in.Name, toks, func(s string) (float64, error) { return parseFloat(s, 64) })
	case runtime.Int64:
		t.Data, err = parseAll(in.Name, toks, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) })
	case runtime.Int32:
		t.Data, err = parseAll(in.Name, toks, func(s string) (int32, error) { v, err := strconv.ParseInt(s, 10, 32); return int32(v), err })
	case runtime.Int16:
		t.Data, err = parseAll(in.Name, toks, func(s string) (int16, error) { v, err := strconv.ParseInt(s, 10, 16); return int16(v), err })
	case runtime.Int8:
		t.Data, err = parseAll(in.Name, toks, func(s string) (int8, error) { v, err := strconv.ParseInt(s, 10, 8); return int8(v), err })
	case runtime.Uint64:
		t.Data, err = parseAll(in.Name, toks, func(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) })
	case runtime.Uint32:
		t.Data, err = parseAll(in.Name, toks, func(s string) (uint32, error) { v, err := strconv.ParseUint(s, 10, 32); return uint32(v), err })
	case runtime.Uint16:
		t.Data, err = parseAll(in.Name, toks, func(s string) (uint16, error) { v, err := strconv.ParseUint(s, 10, 16); return uint16(v), err })
	case runtime.Uint8:
		t.Data, err = parseAll(in.Name, toks, func(s string) (uint8, error) { v, err := strconv.ParseUint(s, 10, 8); return uint8(v), err })
	case runtime.Bool:
		t.Data, err = parseAll(in.Name, toks, func(s string) (bool, error) {
			// Not strconv.ParseBool, which also takes "t", "1" and "TRUE".
			switch s {
			case "true":
				return true, nil
			case "false":
				return false, nil
			}
			return false, fmt.Errorf("want true or false")
		})
	case runtime.Bytes:
		t.Data, err = parseAll(in.Name, toks, func(s string) ([]byte, error) {
			var v string
			if err := json.Unmarshal([]byte(s), &v); err != nil {
				return nil, fmt.Errorf("want a JSON string")
			}
			return []byte(v), nil
		})
	case runtime.FP16:
		return runtime.Tensor{}, invalid(in.Name, "FP16 cannot be sent as JSON")
	default:
		return runtime.Tensor{}, invalid(in.Name, "unknown datatype %q", dt)
	}
	if err != nil {
		return runtime.Tensor{}, err
	}
	return t, nil
}

func parseAll[T any](name string, toks [][]byte, parse func(string) (T, error)) ([]T, error) {
	out := make([]T, len(toks))
	for i, tok := range toks {
		v, err := parse(string(tok))
		if err == nil && tok[0] != '"' && tok[0] != 'n' && tok[0] != 't' && tok[0] != 'f' && !isJSONNumber(string(tok)) {
			// strconv takes forms JSON does not ("+1", "01", "1.").
			err = fmt.Errorf("not a JSON number")
		}
		if err != nil {
			return nil, invalid(name, "element %d: %q is not a valid value for the datatype", i, tok)
		}
		out[i] = v
	}
	return out, nil
}

// parseFloat parses a JSON number. JSON has no NaN, so null stands for a
// missing value (NaN), which tree models route by their default branch.
func parseFloat(s string, bits int) (float64, error) {
	if s == "null" {
		return math.NaN(), nil
	}
	if !isJSONNumber(s) {
		return 0, fmt.Errorf("not a JSON number")
	}
	return strconv.ParseFloat(s, bits)
}

// isJSONNumber reports whether s follows JSON's number grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - start
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// flatten appends the scalar tokens of a JSON array (nested to any depth)
// to toks, in document order.
func flatten(data []byte, toks [][]byte) ([][]byte, error) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '[' {
		return nil, fmt.Errorf("want a JSON array")
	}
	depth := 0
	expectValue := true // after '[' or ','
	for i < len(data) {
		c := data[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '[':
			if !expectValue {
				return nil, fmt.Errorf("offset %d: missing comma", i)
			}
			depth++
			i++
		case c == ']':
			if expectValue && data[prevNonSpace(data, i)] == ',' {
				return nil, fmt.Errorf("offset %d: trailing comma", i)
			}
			depth--
			i++
			expectValue = false
			if depth == 0 {
				if skipSpace(data, i) != len(data) {
					return nil, fmt.Errorf("offset %d: data after the array", i)
				}
				return toks, nil
			}
		case c == ',':
			if expectValue {
				return nil, fmt.Errorf("offset %d: unexpected comma", i)
			}
			expectValue = true
			i++
		default:
			if !expectValue {
				return nil, fmt.Errorf("offset %d: missing comma", i)
			}
			end, err := scalarEnd(data, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, data[i:end])
			i = end
			expectValue = false
		}
	}
	return nil, fmt.Errorf("unterminated array")
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

func prevNonSpace(data []byte, i int) int {
	for i > 0 {
		i--
		if c := data[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return i
		}
	}
	return 0
}

// scalarEnd finds the end of the number, literal or string starting at i.
func scalarEnd(data []byte, i int) (int, error) {
	if data[i] == '"' {
		for j := i + 1; j < len(data); j++ {
			switch data[j] {
			case '\\':
				j++
			case '"':
				return j + 1, nil
			}
		}
		return 0, fmt.Errorf("offset %d: unterminated string", i)
	}
	j := i
	for j < len(data) {
		c := data[j]
		if c == ',' || c == ']' || c == '[' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '"' || c == '{' || c == '}' {
			break
		}
		j++
	}
	if j == i {
		return 0, fmt.Errorf("offset %d: unexpected %q", i, data[i])
	}
	return j, nil
}

// EncodeJSON renders t as a REST output tensor. NaN and infinities have no
// JSON form and are an error naming the output.
func EncodeJSON(t runtime.Tensor) (JSONOutput, error) {
	data, err := appendData(t, false)
	if err != nil {
		return JSONOutput{}, err
	}
	return JSONOutput{Name: t.Name, Shape: t.Shape, Datatype: string(t.Datatype), Data: data}, nil
}

// EncodeJSONInput renders t as a REST input tensor, for clients. NaN is
// written as null, which DecodeJSON reads back as NaN.
func EncodeJSONInput(t runtime.Tensor) (JSONInput, error) {
	data, err := appendData(t, true)
	if err != nil {
		return JSONInput{}, err
	}
	return JSONInput{Name: t.Name, Shape: t.Shape, Datatype: string(t.Datatype), Data: data}, nil
}

func appendData(t runtime.Tensor, nanAsNull bool) (json.RawMessage, error) {
	b := make([]byte, 0, 64)
	b = append(b, '[')
	var err error
	switch d := t.Data.(type) {
	case []float32:
		b, err = appendFloats(b, t.Name, d, 32, nanAsNull)
	case []float64:
		b, err = appendFloats(b, t.Name, d, 64, nanAsNull)
	case []int64:
		b = appendInts(b, d)
	case []int32:
		b = appendInts(b, d)
	case []int16:
		b = appendInts(b, d)
	case []int8:
		b = appendInts(b, d)
	case []uint64:
		b = appendUints(b, d)
	case []uint32:
		b = appendUints(b, d)
	case []uint16:
		if t.Datatype == runtime.FP16 {
			return nil, fmt.Errorf("output %q: FP16 cannot be rendered as JSON: %w", t.Name, errOutput)
		}
		b = appendUints(b, d)
	case []uint8:
		b = appendUints(b, d)
	case []bool:
		for i, v := range d {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendBool(b, v)
		}
	case [][]byte:
		for i, v := range d {
			if i > 0 {
				b = append(b, ',')
			}
			s, _ := json.Marshal(string(v)) // marshalling a string cannot fail
			b = append(b, s...)
		}
	default:
		return nil, fmt.Errorf("output %q: data of type %T: %w", t.Name, t.Data, errOutput)
	}
	if err != nil {
		return nil, err
	}
	return append(b, ']'), nil
}

func appendFloats[T float32 | float64](b []byte, name string, d []T, bits int, nanAsNull bool) ([]byte, error) {
	for i, v := range d {
		f := float64(v)
		if nanAsNull && math.IsNaN(f) {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, "null"...)
			continue
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("output %q: element %d is %v, which JSON cannot represent: %w", name, i, f, errOutput)
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, f, 'g', -1, bits)
	}
	return b, nil
}

func appendInts[T int8 | int16 | int32 | int64](b []byte, d []T) []byte {
	for i, v := range d {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(v), 10)
	}
	return b
}

func appendUints[T uint8 | uint16 | uint32 | uint64](b []byte, d []T) []byte {
	for i, v := range d {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	return b
}
