package runtime

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestRows(t *testing.T) {
	cases := []struct {
		name  string
		shape []int64
		n     int
		width int
		want  int
		err   string
	}{
		{"batch", []int64{3, 2}, 6, 2, 3, ""},
		{"flat one row", []int64{2}, 2, 2, 1, ""},
		{"empty batch", []int64{0, 2}, 0, 2, 0, ""},
		{"three dims", []int64{2, 2, 3}, 12, 6, 2, ""},
		{"data short", []int64{3, 2}, 4, 2, 0, "wants 6 elements, data has 4"},
		{"partial row", []int64{3}, 3, 2, 0, "not whole rows of 2"},
		{"wrong split", []int64{2, 4}, 8, 2, 0, "not rows of 2 elements"},
		{"negative", []int64{-1, 2}, 2, 2, 0, "negative dimension"},
		{"zero width", []int64{1}, 1, 0, 0, "row width 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Rows(Tensor{Name: "x", Shape: c.shape}, c.width, c.n)
			if c.err != "" {
				if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want ErrInvalidInput containing %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Rows = %d, %v; want %d", got, err, c.want)
			}
		})
	}
}

func TestSpecWidth(t *testing.T) {
	cases := []struct {
		shape   []int64
		batched bool
		width   int
		err     bool
	}{
		{[]int64{-1, 30}, true, 30, false},
		{[]int64{30}, false, 30, false},
		{[]int64{-1, 2, 3}, true, 6, false},
		{[]int64{-1}, true, 1, false},
		{[]int64{-1, -1}, true, 0, true},
		{[]int64{4, -1}, false, 0, true},
	}
	for _, c := range cases {
		s := TensorSpec{Name: "x", Shape: c.shape}
		w, err := s.RowWidth()
		if s.Batched() != c.batched || (err != nil) != c.err || (!c.err && w != c.width) {
			t.Errorf("%v: batched %v width %d err %v", c.shape, s.Batched(), w, err)
		}
	}
}

func TestOutputShape(t *testing.T) {
	cases := []struct {
		shape []int64
		rows  int
		inner int
		want  []int64
	}{
		{[]int64{-1, 1}, 5, 0, []int64{5, 1}},
		{[]int64{-1, -1}, 5, 3, []int64{5, 3}},
		{[]int64{3}, 1, 0, []int64{3}},
		{[]int64{-1}, 2, 9, []int64{2}},
	}
	for _, c := range cases {
		got := OutputShape(TensorSpec{Shape: c.shape}, c.rows, c.inner)
		if !slices.Equal(got, c.want) {
			t.Errorf("OutputShape(%v, %d, %d) = %v, want %v", c.shape, c.rows, c.inner, got, c.want)
		}
	}
	decl := []int64{-1, 1}
	OutputShape(TensorSpec{Shape: decl}, 7, 0)[0] = 99
	if decl[0] != -1 {
		t.Error("OutputShape modified the declaration")
	}
}

func TestConversions(t *testing.T) {
	f, err := Float32s(Tensor{Data: []float64{1.5, -2}})
	if err != nil || !slices.Equal(f, []float32{1.5, -2}) {
		t.Errorf("Float32s(fp64) = %v, %v", f, err)
	}
	if _, err := Float32s(Tensor{Name: "x", Datatype: Int32, Data: []int32{1}}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Float32s(int32) error %v", err)
	}
	for _, d := range []any{[]int8{-3}, []int16{-3}, []int32{-3}, []int64{-3}} {
		got, err := Int64s(Tensor{Data: d})
		if err != nil || !slices.Equal(got, []int64{-3}) {
			t.Errorf("Int64s(%T) = %v, %v", d, got, err)
		}
	}
	for _, d := range []any{[]uint8{3}, []uint16{3}, []uint32{3}, []uint64{3}} {
		got, err := Int64s(Tensor{Data: d})
		if err != nil || !slices.Equal(got, []int64{3}) {
			t.Errorf("Int64s(%T) = %v, %v", d, got, err)
		}
	}
	if _, err := Int64s(Tensor{Name: "u", Data: []uint64{math.MaxUint64}}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Int64s overflow error %v", err)
	}
	if _, err := Int64s(Tensor{Name: "u", Data: []float32{1}}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Int64s(float) error %v", err)
	}
	if err := CheckFinite("x", []float32{1, 2, 3, float32(math.Inf(-1))}, 2); err == nil || !strings.Contains(err.Error(), "row 1 element 1") {
		t.Errorf("CheckFinite error %v", err)
	}
	if err := CheckFinite("x", []float32{1, 2}, 2); err != nil {
		t.Errorf("CheckFinite on finite data: %v", err)
	}
}

func TestFind(t *testing.T) {
	in := []Tensor{{Name: "a"}, {Name: "b", Shape: []int64{1}}}
	if got, err := Find(in, "b"); err != nil || len(got.Shape) != 1 {
		t.Errorf("Find(b) = %v, %v", got, err)
	}
	if _, err := Find(in, "c"); !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), `"c"`) {
		t.Errorf("Find(c) error %v", err)
	}
}

func TestFeatureInput(t *testing.T) {
	x := TensorSpec{Name: "x", Datatype: FP32, Shape: []int64{-1, 3}}
	cases := []struct {
		name   string
		inputs []TensorSpec
		want   string // error substring; empty for success
	}{
		{"one float matrix", []TensorSpec{x}, ""},
		{"fp64", []TensorSpec{{Name: "x", Datatype: FP64, Shape: []int64{3}}}, ""},
		{"two inputs", []TensorSpec{x, x}, "config inputs: 2 declared, a test model takes exactly one"},
		{"int input", []TensorSpec{{Name: "x", Datatype: Int64, Shape: []int64{-1, 3}}}, `config input "x": datatype INT64, want FP32 or FP64`},
		{"variable width", []TensorSpec{{Name: "x", Datatype: FP32, Shape: []int64{-1, -1}}}, "want a fixed positive size"},
		{"wrong width", []TensorSpec{{Name: "x", Datatype: FP32, Shape: []int64{-1, 4}}}, `config input "x": 4 features per row, the model has n_features 3`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := FeatureInput(Signature{Inputs: c.inputs}, "a test model", 3, "n_features")
			if c.want == "" {
				if err != nil || got.Name != "x" {
					t.Fatalf("FeatureInput = %+v, %v; want input x", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("FeatureInput error = %v, want it to contain %q", err, c.want)
			}
		})
	}
}
