// Package runtime defines the contract between the inference server and the
// code that evaluates one kind of model (XGBoost trees, linear models,
// embedding recommenders). The server owns the protocol, validation against
// the model's declared signature, batching and caching; a runtime only turns
// a batch of input tensors into output tensors.
package runtime

import (
	"context"
	"fmt"
)

// Datatype is a tensor element type, named as the Open Inference Protocol
// names it.
type Datatype string

// The datatypes of the Open Inference Protocol.
const (
	Bool   Datatype = "BOOL"
	Uint8  Datatype = "UINT8"
	Uint16 Datatype = "UINT16"
	Uint32 Datatype = "UINT32"
	Uint64 Datatype = "UINT64"
	Int8   Datatype = "INT8"
	Int16  Datatype = "INT16"
	Int32  Datatype = "INT32"
	Int64  Datatype = "INT64"
	FP16   Datatype = "FP16"
	FP32   Datatype = "FP32"
	FP64   Datatype = "FP64"
	Bytes  Datatype = "BYTES"
)

// Tensor is a named, typed, shaped array in row-major order. Data holds a
// slice whose element type matches Datatype: []bool, []uint8, []uint16,
// []uint32, []uint64, []int8, []int16, []int32, []int64, []float32 (FP32),
// []float64 (FP64) or [][]byte (BYTES). FP16 travels only as raw bytes and
// is not evaluated by any runtime.
type Tensor struct {
	Name     string
	Datatype Datatype
	Shape    []int64
	Data     any
}

// Elements returns the number of elements the shape describes.
func (t Tensor) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// TensorSpec declares one input or output of a model. A dimension of -1 is
// variable (the batch dimension, for models with a max batch size).
type TensorSpec struct {
	Name     string
	Datatype Datatype
	Shape    []int64
}

// Signature is what a model accepts and returns.
type Signature struct {
	Inputs  []TensorSpec
	Outputs []TensorSpec
}

// Spec is what a loader receives: where the artifact is and what the model
// repository's config.yaml declared for it.
type Spec struct {
	Name      string
	Version   string
	Dir       string            // the version directory, DIR/<model>/<version>
	Signature Signature         // from config.yaml
	Params    map[string]string // runtime-specific options from config.yaml
}

// Model is a loaded model. Predict must be safe for concurrent use and must
// not retain the input slices after it returns.
type Model interface {
	// Predict evaluates a batch: every input has the batch as its first
	// dimension. It returns every declared output; the server filters the
	// requested ones. Errors wrap ErrInvalidInput when the caller's input is
	// at fault.
	Predict(ctx context.Context, inputs []Tensor) ([]Tensor, error)
	// MemoryBytes estimates the memory the loaded model holds, for the
	// model cache's budget.
	MemoryBytes() int64
}

// Loader loads one model version from spec.Dir.
type Loader func(ctx context.Context, spec Spec) (Model, error)

// Registry maps a config.yaml runtime name ("xgboost", "linear",
// "embedding") to its loader. It is built by the caller, so there is no
// global registration.
type Registry map[string]Loader

// Load looks up spec's runtime and loads the model.
func (r Registry) Load(ctx context.Context, runtime string, spec Spec) (Model, error) {
	l, ok := r[runtime]
	if !ok {
		return nil, fmt.Errorf("unknown runtime %q", runtime)
	}
	return l(ctx, spec)
}

// ErrInvalidInput marks an error caused by the request's tensors, which the
// server reports as INVALID_ARGUMENT (HTTP 400).
var ErrInvalidInput = fmt.Errorf("invalid input")
