package tensor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// DecodeJSON decodes one REST input tensor whose data was already read.
// Data may be nested arrays (rectangular, row-major); its elements are
// taken in order, as the protocol allows.
func DecodeJSON(in JSONInput) (runtime.Tensor, error) {
	t := runtime.Tensor{Name: in.Name, Datatype: runtime.Datatype(in.Datatype), Shape: in.Shape}
	if len(in.Data) == 0 {
		return runtime.Tensor{}, invalid(in.Name, "data is missing")
	}
	d := &requestDecoder{opts: DecodeOptions{BodyBytes: int64(len(in.Data))}}
	s := newScanner(bytes.NewReader(in.Data), int64(len(in.Data)))
	if err := d.data(&t, s); err != nil {
		return runtime.Tensor{}, err
	}
	if _, err := s.peek(); !errors.Is(err, io.EOF) {
		return runtime.Tensor{}, invalid(in.Name, "data after the array")
	}
	return t, nil
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
	// Sized for typical values up front: growing by doubling would copy a
	// large output several times and leave the copies to the collector.
	per := int64(4)
	switch t.Datatype {
	case runtime.FP32:
		per = 12
	case runtime.FP64, runtime.Int64, runtime.Uint64:
		per = 20
	}
	b := make([]byte, 0, min(2+t.Elements()*per, 1<<30))
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
