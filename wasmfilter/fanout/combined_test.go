package fanout

import (
	"reflect"
	"slices"
	"testing"

	"github.com/maestro-ml/maestro/wasmfilter/fanout/combine"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
)

// TestCombinedTensorInPlace: the tensor a fan-out answers, built in the
// room the response holds for it and rounded in the result's own values,
// is CombinedTensor's, for every kind of result; CombinedTensor itself
// leaves the result alone.
func TestCombinedTensorInPlace(t *testing.T) {
	fp32 := &oip.Tensor{Name: "probabilities", Datatype: "FP32", Shape: []int64{2, 2}}
	tests := map[string]struct {
		like *oip.Tensor
		res  combine.Result
	}{
		"scores":         {fp32, combine.Result{Rows: 2, Width: 2, Values: []float64{0.1, 0.9, 1.0 / 3, 2.0 / 3}}},
		"fp64":           {&oip.Tensor{Name: "p", Datatype: "FP64", Shape: []int64{1, 2}}, combine.Result{Rows: 1, Width: 2, Values: []float64{0.1, 0.9}}},
		"classes":        {fp32, combine.Result{Rows: 2, Width: 1, Values: []float64{1, 0}, Classes: true}},
		"shape mismatch": {fp32, combine.Result{Rows: 1, Width: 1, Values: []float64{0.7}}},
		"long shape":     {&oip.Tensor{Name: "p", Datatype: "FP32", Shape: []int64{1, 1, 1, 1, 1, 2}}, combine.Result{Rows: 1, Width: 2, Values: []float64{0.2, 0.8}}},
		"no shape":       {&oip.Tensor{Name: "p", Datatype: "FP32"}, combine.Result{Rows: 1, Width: 1, Values: []float64{0.2}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			orig := slices.Clone(tc.res.Values)
			want := CombinedTensor(tc.like, tc.res)
			if !slices.Equal(tc.res.Values, orig) {
				t.Fatalf("CombinedTensor changed the result's values: %v, were %v", tc.res.Values, orig)
			}
			var room [4]int64
			got := combinedTensor(tc.like, tc.res, room[:0], true)
			if got.Name != want.Name || got.Datatype != want.Datatype || !slices.Equal(got.Shape, want.Shape) ||
				!reflect.DeepEqual(got.Values, want.Values) {
				t.Fatalf("in place: %+v, want %+v", got, want)
			}
		})
	}
}
