package batching

import (
	"fmt"
	"slices"

	"github.com/maestro-ml/maestro/inference/runtime"
)

// rows is the batch dimension of a request: the first dimension of its
// first input, or -1 when the inputs disagree or have no batch dimension.
func rows(inputs []runtime.Tensor) int64 {
	if len(inputs) == 0 || len(inputs[0].Shape) == 0 {
		return -1
	}
	n := inputs[0].Shape[0]
	for _, t := range inputs[1:] {
		if len(t.Shape) == 0 || t.Shape[0] != n {
			return -1
		}
	}
	return n
}

// merge concatenates the requests' inputs along the batch dimension, in the
// first request's input order. ok is false when the requests cannot be
// merged (different names, datatypes or per-row shapes).
func merge(reqs []*request, total int64) (out []runtime.Tensor, ok bool) {
	first := reqs[0].inputs
	out = make([]runtime.Tensor, len(first))
	parts := make([]any, len(reqs))
	for i, t := range first {
		for j, r := range reqs {
			u, found := findInput(r.inputs, t.Name)
			if !found || u.Datatype != t.Datatype || len(r.inputs) != len(first) ||
				!slices.Equal(u.Shape[1:], t.Shape[1:]) {
				return nil, false
			}
			parts[j] = u.Data
		}
		data, ok := concat(parts)
		if !ok {
			return nil, false
		}
		shape := slices.Clone(t.Shape)
		shape[0] = total
		out[i] = runtime.Tensor{Name: t.Name, Datatype: t.Datatype, Shape: shape, Data: data}
	}
	return out, true
}

func findInput(ts []runtime.Tensor, name string) (runtime.Tensor, bool) {
	for _, t := range ts {
		if t.Name == name {
			return t, true
		}
	}
	return runtime.Tensor{}, false
}

func concat(parts []any) (any, bool) {
	switch parts[0].(type) {
	case []float32:
		return concatOf[float32](parts)
	case []float64:
		return concatOf[float64](parts)
	case []int64:
		return concatOf[int64](parts)
	case []int32:
		return concatOf[int32](parts)
	case []int16:
		return concatOf[int16](parts)
	case []int8:
		return concatOf[int8](parts)
	case []uint64:
		return concatOf[uint64](parts)
	case []uint32:
		return concatOf[uint32](parts)
	case []uint16:
		return concatOf[uint16](parts)
	case []uint8:
		return concatOf[uint8](parts)
	case []bool:
		return concatOf[bool](parts)
	case [][]byte:
		return concatOf[[]byte](parts)
	}
	return nil, false
}

func concatOf[T any](parts []any) (any, bool) {
	n := 0
	for _, p := range parts {
		s, ok := p.([]T)
		if !ok {
			return nil, false
		}
		n += len(s)
	}
	out := make([]T, 0, n)
	for _, p := range parts {
		out = append(out, p.([]T)...)
	}
	return out, true
}

// split cuts each output into the requests' row ranges. The parts share the
// outputs' backing arrays: each request reads only its own range.
func split(outputs []runtime.Tensor, sizes []int64, total int64) ([][]runtime.Tensor, error) {
	res := make([][]runtime.Tensor, len(sizes))
	for i := range res {
		res[i] = make([]runtime.Tensor, len(outputs))
	}
	for j, t := range outputs {
		if len(t.Shape) == 0 || t.Shape[0] != total {
			return nil, fmt.Errorf("output %q has shape %v, want %d rows for the merged batch", t.Name, t.Shape, total)
		}
		per := int64(1)
		for _, d := range t.Shape[1:] {
			per *= d
		}
		var from int64
		for i, n := range sizes {
			data, err := sliceData(t.Data, from*per, (from+n)*per)
			if err != nil {
				return nil, fmt.Errorf("output %q: %w", t.Name, err)
			}
			shape := slices.Clone(t.Shape)
			shape[0] = n
			res[i][j] = runtime.Tensor{Name: t.Name, Datatype: t.Datatype, Shape: shape, Data: data}
			from += n
		}
	}
	return res, nil
}

func sliceData(data any, lo, hi int64) (any, error) {
	switch d := data.(type) {
	case []float32:
		return sliceOf(d, lo, hi)
	case []float64:
		return sliceOf(d, lo, hi)
	case []int64:
		return sliceOf(d, lo, hi)
	case []int32:
		return sliceOf(d, lo, hi)
	case []int16:
		return sliceOf(d, lo, hi)
	case []int8:
		return sliceOf(d, lo, hi)
	case []uint64:
		return sliceOf(d, lo, hi)
	case []uint32:
		return sliceOf(d, lo, hi)
	case []uint16:
		return sliceOf(d, lo, hi)
	case []uint8:
		return sliceOf(d, lo, hi)
	case []bool:
		return sliceOf(d, lo, hi)
	case [][]byte:
		return sliceOf(d, lo, hi)
	}
	return nil, fmt.Errorf("unsupported data type %T", data)
}

func sliceOf[T any](s []T, lo, hi int64) (any, error) {
	if hi > int64(len(s)) {
		return nil, fmt.Errorf("holds %d elements, want at least %d", len(s), hi)
	}
	// Full slice expression, so that an append by one request cannot write
	// into the next request's rows.
	return s[lo:hi:hi], nil
}
