package xgboost

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/runtime/fixture"
)

// sig is a batched signature: one FP32 input of width features and one FP32
// output of width values.
func sig(features, width int64) runtime.Signature {
	return runtime.Signature{
		Inputs:  []runtime.TensorSpec{{Name: "x", Datatype: runtime.FP32, Shape: []int64{-1, features}}},
		Outputs: []runtime.TensorSpec{{Name: "y", Datatype: runtime.FP32, Shape: []int64{-1, width}}},
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFixtures replays XGBoost 1.7's own predictions for the objectives and
// shapes the demo models do not cover (regression, reg:logistic with 35%
// NaN inputs, a custom base_score, multi:softmax, a random forest).
func TestFixtures(t *testing.T) {
	for _, name := range []string{"reg_squarederror", "reg_logistic", "binary_base_score", "multi_softmax", "random_forest"} {
		t.Run(name, func(t *testing.T) {
			fx, err := fixture.Load(filepath.Join("testdata", name+".fixture.json"))
			if err != nil {
				t.Fatal(err)
			}
			in, want := fx.Inputs[0], fx.Outputs[0]
			m, err := New(mustRead(t, filepath.Join("testdata", name+".json")), sig(in.Shape[1], want.Shape[1]))
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Predict(context.Background(), fx.Inputs)
			if err != nil {
				t.Fatal(err)
			}
			if err := fixture.Compare(want, got[0], fx.Tolerance); err != nil {
				t.Error(err)
			}
		})
	}
}

func sigm(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// TestV2Layout checks a hand-written model in XGBoost 2.x's layout
// (base_score as a vector string, iteration_indptr, size_leaf_vector 1)
// against values worked out by hand: tree 0 splits x0 < 0.5 (NaN left) into
// leaf 0.2 and a split x1 < -1 (NaN right) into leaves -0.3 and 0.4; tree 1
// is a single leaf 0.1; base_score 0.5 is margin 0.
func TestV2Layout(t *testing.T) {
	m, err := New(mustRead(t, "testdata/v2_layout.json"), sig(2, 1))
	if err != nil {
		t.Fatal(err)
	}
	nan := float32(math.NaN())
	cases := []struct {
		name string
		row  []float32
		want float64
	}{
		{"left leaf", []float32{0, 0}, sigm(0.2 + 0.1)},
		{"right then left", []float32{1, -2}, sigm(-0.3 + 0.1)},
		{"right then right", []float32{1, 0}, sigm(0.4 + 0.1)},
		{"threshold goes right", []float32{0.5, 0}, sigm(0.4 + 0.1)},
		{"just under threshold", []float32{math.Nextafter32(0.5, 0), 5}, sigm(0.2 + 0.1)},
		{"missing root goes left", []float32{nan, 5}, sigm(0.2 + 0.1)},
		{"missing second goes right", []float32{1, nan}, sigm(0.4 + 0.1)},
		{"all missing", []float32{nan, nan}, sigm(0.2 + 0.1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := runtime.Tensor{Name: "x", Datatype: runtime.FP32, Shape: []int64{1, 2}, Data: c.row}
			out, err := m.Predict(context.Background(), []runtime.Tensor{in})
			if err != nil {
				t.Fatal(err)
			}
			got := out[0].Data.([]float32)[0]
			if math.Abs(float64(got)-c.want) > 1e-6 {
				t.Errorf("got %.8f, want %.8f", got, c.want)
			}
		})
	}
	info := m.Info()
	if info.Trees != 2 || info.Nodes != 6 || info.MaxDepth != 2 || info.Version[0] != 2 {
		t.Errorf("info = %+v", info)
	}
}

func TestBaseScore(t *testing.T) {
	cases := []struct {
		in     string
		groups int
		want   []float64
		err    string
	}{
		{"5E-1", 1, []float64{0.5}, ""},
		{"[5E-1]", 1, []float64{0.5}, ""},
		{"[5E-1]", 3, []float64{0.5, 0.5, 0.5}, ""},
		{"[1E-1,2E-1,3E-1]", 3, []float64{0.1, 0.2, 0.3}, ""},
		{"", 1, []float64{0.5}, ""},
		{"[1E-1,2E-1]", 3, nil, "2 values for 3 output groups"},
		{"[5E-1", 1, nil, "unterminated"},
		{"abc", 1, nil, "not a finite number"},
		{"NaN", 1, nil, "not a finite number"},
	}
	for _, c := range cases {
		got, err := baseScore(c.in, c.groups)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("baseScore(%q) error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || len(got) != len(c.want) {
			t.Fatalf("baseScore(%q) = %v, %v", c.in, got, err)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("baseScore(%q)[%d] = %v, want %v", c.in, i, got[i], c.want[i])
			}
		}
	}
}

// TestRefused loads models XGBoost itself wrote with features the runtime
// does not implement; each must fail with an error saying which.
func TestRefused(t *testing.T) {
	cases := map[string]string{
		"dart":        `booster "dart" is not supported`,
		"gblinear":    `booster "gblinear" is not supported`,
		"poisson":     `objective "count:poisson" is not supported`,
		"categorical": "categorical",
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := New(mustRead(t, filepath.Join("testdata", "refused", name+".json")), sig(6, 1))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v, want it to contain %q", err, want)
			}
		})
	}
}

// TestMalformed edits the hand-written model into broken ones and checks
// each error names the field at fault.
func TestMalformed(t *testing.T) {
	base := string(mustRead(t, "testdata/v2_layout.json"))
	cases := []struct {
		name, old, new, want string
	}{
		{"syntax", `"learner": {`, `"learner": {,`, "line 2 col"},
		{"wrong type", `"tree_info": [0, 0]`, `"tree_info": "x"`, "field learner.gradient_booster.model.tree_info"},
		{"child out of range", `"left_children": [1, -1, 3, -1, -1]`, `"left_children": [1, -1, 9, -1, -1]`, "trees[0]: node 2: child 9 out of range"},
		{"child is root", `"left_children": [1, -1, 3, -1, -1]`, `"left_children": [1, -1, 0, -1, -1]`, "child 0 out of range"},
		{"shared child", `"right_children": [2, -1, 4, -1, -1]`, `"right_children": [2, -1, 3, -1, -1]`, "reached twice"},
		{"length mismatch", `"split_indices": [0, 0, 1, 0, 0]`, `"split_indices": [0, 0, 1]`, "trees[0].split_indices: 3 entries, num_nodes is 5"},
		{"feature out of range", `"split_indices": [0, 0, 1, 0, 0]`, `"split_indices": [0, 0, 7, 0, 0]`, "trees[0].split_indices[2]: feature 7 out of range"},
		{"bad num_nodes", `"num_nodes": "5"`, `"num_nodes": "five"`, "num_nodes: \"five\" is not an integer"},
		{"tree_info length", `"tree_info": [0, 0]`, `"tree_info": [0]`, "tree_info: 1 entries for 2 trees"},
		{"tree_info group", `"tree_info": [0, 0]`, `"tree_info": [0, 3]`, "tree_info[1]: group 3 out of range"},
		{"base_score", `"base_score": "[5E-1]"`, `"base_score": "[x]"`, "base_score"},
		{"version 3", `"version": [2, 1, 0]`, `"version": [3, 0, 0]`, "want an XGBoost 1.x or 2.x model"},
		{"multi-target", `"num_target": "1"`, `"num_target": "2"`, "multi-target"},
		{"vector leaf", `"num_nodes": "1", "size_leaf_vector": "1"`, `"num_nodes": "1", "size_leaf_vector": "3"`, "vector-leaf"},
		{"default_left value", `"default_left": [1, 0, 0, 0, 0]`, `"default_left": [1, 0, 2, 0, 0]`, "element 2 is 2"},
		{"no classes", `"objective": {"name": "binary:logistic"`, `"objective": {"name": "multi:softprob"`, "num_class: 0 classes"},
		{"num_feature", `"num_feature": "2", "num_target"`, `"num_feature": "0", "num_target"`, "num_feature: 0 out of range"},
		{"num_trees", `"num_trees": "2"`, `"num_trees": "3"`, "num_trees"},
		{"nan literal", `"split_conditions": [5E-1,`, `"split_conditions": [NaN,`, "NaN or Infinity"},
		{"nan in a string is text", `"name": "gbtree"`, `"name": "NaN"`, `unknown booster "NaN"`},
		{"leaf overflows float32", `"split_conditions": [5E-1, 2E-1,`, `"split_conditions": [5E-1, 2E39,`, "split_conditions"},
		{"ubjson", `{`, "{L", "UBJSON"},
		{"no learner", `"learner": {`, `"learnr": {`, `missing "learner"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(base, c.old) {
				t.Fatalf("test bug: %q not in model", c.old)
			}
			doc := strings.Replace(base, c.old, c.new, 1)
			_, err := New([]byte(doc), sig(2, 1))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestSignatureMismatch(t *testing.T) {
	model := mustRead(t, "testdata/v2_layout.json")
	reg := mustRead(t, "testdata/reg_squarederror.json")
	two := sig(2, 1)
	two.Inputs = append(two.Inputs, two.Inputs[0])
	labelsOnRegression := sig(6, 1)
	labelsOnRegression.Outputs[0].Datatype = runtime.Int64
	cases := []struct {
		name  string
		model []byte
		sig   runtime.Signature
		want  string
	}{
		{"width", model, sig(3, 1), "3 features per row, the model has num_feature 2"},
		{"output width", model, sig(2, 2), "2 values per row, objective binary:logistic gives 1"},
		{"two inputs", model, two, "2 declared"},
		{"labels on regression", reg, labelsOnRegression, "class labels need a classifier"},
		{"variable width", model, sig(-1, 1), "want a fixed positive size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.model, c.sig)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestPredictBadInput(t *testing.T) {
	m, err := New(mustRead(t, "testdata/v2_layout.json"), sig(2, 1))
	if err != nil {
		t.Fatal(err)
	}
	unbatched := runtime.Signature{
		Inputs:  []runtime.TensorSpec{{Name: "x", Datatype: runtime.FP32, Shape: []int64{2}}},
		Outputs: []runtime.TensorSpec{{Name: "y", Datatype: runtime.FP32, Shape: []int64{1}}},
	}
	mu, err := New(mustRead(t, "testdata/v2_layout.json"), unbatched)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		model *Model
		in    runtime.Tensor
		want  string
	}{
		{"wrong name", m, runtime.Tensor{Name: "z", Datatype: runtime.FP32, Shape: []int64{1, 2}, Data: []float32{1, 2}}, `missing input "x"`},
		{"wrong type", m, runtime.Tensor{Name: "x", Datatype: runtime.Int32, Shape: []int64{1, 2}, Data: []int32{1, 2}}, "want FP32 or FP64"},
		{"short data", m, runtime.Tensor{Name: "x", Datatype: runtime.FP32, Shape: []int64{2, 2}, Data: []float32{1, 2}}, "wants 4 elements, data has 2"},
		{"partial row", m, runtime.Tensor{Name: "x", Datatype: runtime.FP32, Shape: []int64{3}, Data: []float32{1, 2, 3}}, "not whole rows"},
		{"wrong row width", m, runtime.Tensor{Name: "x", Datatype: runtime.FP32, Shape: []int64{1, 4}, Data: []float32{1, 2, 3, 4}}, "not rows of 2"},
		{"negative dim", m, runtime.Tensor{Name: "x", Datatype: runtime.FP32, Shape: []int64{-1, -2}, Data: []float32{1, 2}}, "negative dimension"},
		{"unbatched many rows", mu, runtime.Tensor{Name: "x", Datatype: runtime.FP32, Shape: []int64{4}, Data: []float32{1, 2, 3, 4}}, "without a batch dimension"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.model.Predict(context.Background(), []runtime.Tensor{c.in})
			if !errors.Is(err, runtime.ErrInvalidInput) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrInvalidInput containing %q", err, c.want)
			}
		})
	}
}

// TestOutputsByDatatype binds one model to FP64 values plus INT32 and INT64
// labels, and checks them against the FP32 predictions.
func TestOutputsByDatatype(t *testing.T) {
	s := sig(2, 1)
	s.Outputs = []runtime.TensorSpec{
		{Name: "p32", Datatype: runtime.FP32, Shape: []int64{-1, 1}},
		{Name: "p64", Datatype: runtime.FP64, Shape: []int64{-1, 1}},
		{Name: "c32", Datatype: runtime.Int32, Shape: []int64{-1, 1}},
		{Name: "c64", Datatype: runtime.Int64, Shape: []int64{-1, 1}},
		{Name: "again", Datatype: runtime.FP32, Shape: []int64{-1, 1}},
	}
	m, err := New(mustRead(t, "testdata/v2_layout.json"), s)
	if err != nil {
		t.Fatal(err)
	}
	// margins 0.3, -0.2, 0.5: classes 1, 0, 1.
	in := runtime.Tensor{Name: "x", Datatype: runtime.FP64, Shape: []int64{3, 2}, Data: []float64{0, 0, 1, -2, 1, 0}}
	out, err := m.Predict(context.Background(), []runtime.Tensor{in})
	if err != nil {
		t.Fatal(err)
	}
	p32 := out[0].Data.([]float32)
	p64 := out[1].Data.([]float64)
	c32 := out[2].Data.([]int32)
	c64 := out[3].Data.([]int64)
	again := out[4].Data.([]float32)
	wantClass := []int64{1, 0, 1}
	for r := range 3 {
		if float64(p32[r]) != p64[r] || again[r] != p32[r] || int64(c32[r]) != wantClass[r] || c64[r] != wantClass[r] {
			t.Errorf("row %d: p32 %v p64 %v again %v c32 %v c64 %v, want class %d", r, p32[r], p64[r], again[r], c32[r], c64[r], wantClass[r])
		}
	}
	again[0] = -1
	if p32[0] == -1 {
		t.Error("two FP32 outputs share one slice")
	}
	for _, o := range out {
		if o.Shape[0] != 3 || o.Shape[1] != 1 {
			t.Errorf("%s shape %v, want [3 1]", o.Name, o.Shape)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.json"), mustRead(t, "testdata/v2_layout.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := runtime.Spec{Name: "t", Version: "1", Dir: dir, Signature: sig(2, 1), Params: map[string]string{"model_file": "m.json"}}
	m, err := Load(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if m.MemoryBytes() < 6*12 {
		t.Errorf("MemoryBytes = %d, below the nodes' own size", m.MemoryBytes())
	}
	if m.(*Model).Info().LoadTime <= 0 {
		t.Error("load time not recorded")
	}
	spec.Params = nil
	if _, err := Load(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "model.json") {
		t.Errorf("missing default file: error %v", err)
	}
	spec.Params = map[string]string{"model_file": "../m.json"}
	if _, err := Load(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "model_file") {
		t.Errorf("path escape: error %v", err)
	}
}
