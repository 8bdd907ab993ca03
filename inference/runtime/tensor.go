package runtime

import (
	"fmt"
	"math"
)

// Batched reports whether a declared tensor carries a leading batch
// dimension (-1), which config.yaml adds when max_batch_size > 0.
func (s TensorSpec) Batched() bool {
	return len(s.Shape) > 0 && s.Shape[0] == -1
}

// RowWidth is the number of elements in one row of s: the product of its
// dimensions after the batch dimension. It returns an error when one of
// those dimensions is variable, which a fixed-width runtime cannot use.
func (s TensorSpec) RowWidth() (int, error) {
	dims := s.Shape
	if s.Batched() {
		dims = dims[1:]
	}
	w := 1
	for i, d := range dims {
		if d <= 0 {
			return 0, fmt.Errorf("tensor %q: dimension %d is %d, want a fixed positive size", s.Name, i, d)
		}
		w *= int(d)
	}
	return w, nil
}

// FeatureInput checks that sig declares exactly one input, a float
// feature matrix of features columns, which is what the tree and linear
// runtimes take. kind names the runtime and featuresField the model file's
// field giving the count, so the error points at both files.
func FeatureInput(sig Signature, kind string, features int, featuresField string) (TensorSpec, error) {
	if len(sig.Inputs) != 1 {
		return TensorSpec{}, fmt.Errorf("config inputs: %d declared, %s takes exactly one (the feature matrix)", len(sig.Inputs), kind)
	}
	in := sig.Inputs[0]
	if in.Datatype != FP32 && in.Datatype != FP64 {
		return TensorSpec{}, fmt.Errorf("config input %q: datatype %s, want FP32 or FP64", in.Name, in.Datatype)
	}
	w, err := in.RowWidth()
	if err != nil {
		return TensorSpec{}, fmt.Errorf("config input %q: %w", in.Name, err)
	}
	if w != features {
		return TensorSpec{}, fmt.Errorf("config input %q: %d features per row, the model has %s %d", in.Name, w, featuresField, features)
	}
	return in, nil
}

// Find returns the input named name.
//
// # Errors
//
// Wraps ErrInvalidInput when no input has that name.
func Find(inputs []Tensor, name string) (Tensor, error) {
	for _, t := range inputs {
		if t.Name == name {
			return t, nil
		}
	}
	return Tensor{}, fmt.Errorf("%w: missing input %q", ErrInvalidInput, name)
}

// Rows checks that t holds whole rows of width elements and returns how
// many. A tensor whose first dimension is the batch must agree with its
// element count; an unbatched tensor (no -1 in its declaration) is one row.
//
// # Errors
//
// Wraps ErrInvalidInput when the shape, element count or data length
// disagree.
func Rows(t Tensor, width int, n int) (int, error) {
	if width <= 0 {
		return 0, fmt.Errorf("%w: input %q: row width %d", ErrInvalidInput, t.Name, width)
	}
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: input %q: negative dimension in shape %v", ErrInvalidInput, t.Name, t.Shape)
		}
	}
	if int64(n) != t.Elements() {
		return 0, fmt.Errorf("%w: input %q: shape %v wants %d elements, data has %d", ErrInvalidInput, t.Name, t.Shape, t.Elements(), n)
	}
	if n%width != 0 {
		return 0, fmt.Errorf("%w: input %q: %d elements are not whole rows of %d", ErrInvalidInput, t.Name, n, width)
	}
	rows := n / width
	if len(t.Shape) > 1 && int(t.Shape[0]) != rows {
		return 0, fmt.Errorf("%w: input %q: shape %v is not rows of %d elements", ErrInvalidInput, t.Name, t.Shape, width)
	}
	return rows, nil
}

// Float32s returns t's elements as float32: FP32 data as is (not copied),
// FP64 converted. Other datatypes are an input error.
func Float32s(t Tensor) ([]float32, error) {
	switch d := t.Data.(type) {
	case []float32:
		return d, nil
	case []float64:
		out := make([]float32, len(d))
		for i, v := range d {
			out[i] = float32(v)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: input %q: datatype %s (data %T), want FP32 or FP64", ErrInvalidInput, t.Name, t.Datatype, t.Data)
	}
}

// Int64s returns t's integer elements widened to int64 (INT64 data as is).
func Int64s(t Tensor) ([]int64, error) {
	switch d := t.Data.(type) {
	case []int64:
		return d, nil
	case []int32:
		return widen(d), nil
	case []int16:
		return widen(d), nil
	case []int8:
		return widen(d), nil
	case []uint32:
		return widen(d), nil
	case []uint16:
		return widen(d), nil
	case []uint8:
		return widen(d), nil
	case []uint64:
		out := make([]int64, len(d))
		for i, v := range d {
			if v > math.MaxInt64 {
				return nil, fmt.Errorf("%w: input %q: element %d (%d) overflows INT64", ErrInvalidInput, t.Name, i, v)
			}
			out[i] = int64(v)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: input %q: datatype %s (data %T), want an integer type", ErrInvalidInput, t.Name, t.Datatype, t.Data)
	}
}

func widen[T int8 | int16 | int32 | uint8 | uint16 | uint32](d []T) []int64 {
	out := make([]int64, len(d))
	for i, v := range d {
		out[i] = int64(v)
	}
	return out
}

// OutputShape is the shape of output s for a batch of rows: the batch
// dimension becomes rows and any later variable dimension becomes inner.
func OutputShape(s TensorSpec, rows, inner int) []int64 {
	shape := make([]int64, len(s.Shape))
	copy(shape, s.Shape)
	for i, d := range shape {
		switch {
		case i == 0 && s.Batched():
			shape[i] = int64(rows)
		case d < 0:
			shape[i] = int64(inner)
		}
	}
	return shape
}

// CheckFinite returns an input error naming the first NaN or infinity in
// data, read as rows of width elements.
func CheckFinite(name string, data []float32, width int) error {
	for i, v := range data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: input %q: row %d element %d is %v, which this model does not accept", ErrInvalidInput, name, i/width, i%width, v)
		}
	}
	return nil
}
