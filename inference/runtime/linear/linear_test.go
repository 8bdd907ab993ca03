package linear

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

func sig(features, outputs int64, dts ...runtime.Datatype) runtime.Signature {
	s := runtime.Signature{Inputs: []runtime.TensorSpec{{Name: "x", Datatype: runtime.FP32, Shape: []int64{-1, features}}}}
	if len(dts) == 0 {
		dts = []runtime.Datatype{runtime.FP32}
	}
	for i, dt := range dts {
		w := outputs
		if dt == runtime.Int32 || dt == runtime.Int64 {
			w = 1
		}
		s.Outputs = append(s.Outputs, runtime.TensorSpec{Name: "y" + string(rune('0'+i)), Datatype: dt, Shape: []int64{-1, w}})
	}
	return s
}

const twoFeatures = `{"format": "maestro-linear/v1", "num_features": 2, "link": "%s",
 "weights": [[1.5, -2]%s], "intercept": [0.25%s]}`

func model(link, extraRow, extraIntercept string) []byte {
	s := strings.Replace(twoFeatures, "%s", link, 1)
	s = strings.Replace(s, "%s", extraRow, 1)
	return []byte(strings.Replace(s, "%s", extraIntercept, 1))
}

func sigm(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// TestPredict checks each link against sums worked out by hand for the row
// (2, 1): output 0 is 0.25 + 1.5*2 - 2*1 = 1.25, output 1 is -1 + 0.5*2 + 1*1 = 1.
func TestPredict(t *testing.T) {
	e1, e0 := math.Exp(1.25), math.Exp(1)
	cases := []struct {
		name  string
		model []byte
		outs  int64
		want  []float64
		class int64
	}{
		{"identity", model("identity", "", ""), 1, []float64{1.25}, -1},
		{"logistic", model("logistic", "", ""), 1, []float64{sigm(1.25)}, 1},
		{"one-vs-rest", model("logistic", ", [0.5, 1]", ", -1"), 2, []float64{sigm(1.25), sigm(1)}, 0},
		{"softmax", model("softmax", ", [0.5, 1]", ", -1"), 2, []float64{e1 / (e1 + e0), e0 / (e1 + e0)}, 0},
		{"multi-output identity", model("identity", ", [0.5, 1]", ", -1"), 2, []float64{1.25, 1}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dts := []runtime.Datatype{runtime.FP32, runtime.FP64}
			if c.class >= 0 {
				dts = append(dts, runtime.Int64, runtime.Int32)
			}
			m, err := New(c.model, sig(2, c.outs, dts...))
			if err != nil {
				t.Fatal(err)
			}
			in := runtime.Tensor{Name: "x", Datatype: runtime.FP32, Shape: []int64{1, 2}, Data: []float32{2, 1}}
			out, err := m.Predict(context.Background(), []runtime.Tensor{in})
			if err != nil {
				t.Fatal(err)
			}
			p32, p64 := out[0].Data.([]float32), out[1].Data.([]float64)
			for i, w := range c.want {
				if math.Abs(p64[i]-w) > 1e-12 || math.Abs(float64(p32[i])-w) > 1e-6 {
					t.Errorf("output %d: fp64 %v fp32 %v, want %v", i, p64[i], p32[i], w)
				}
			}
			if c.class >= 0 {
				if got := out[2].Data.([]int64)[0]; got != c.class {
					t.Errorf("INT64 class %d, want %d", got, c.class)
				}
				if got := out[3].Data.([]int32)[0]; int64(got) != c.class {
					t.Errorf("INT32 class %d, want %d", got, c.class)
				}
			}
			if s := out[0].Shape; len(s) != 2 || s[0] != 1 || s[1] != c.outs {
				t.Errorf("shape %v", s)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"not json", `{`, "decode"},
		{"unknown field", `{"format": "maestro-linear/v1", "num_features": 1, "link": "identity", "weights": [[1]], "bias": [1]}`, `unknown field "bias"`},
		{"format", `{"format": "other", "num_features": 1, "link": "identity", "weights": [[1]]}`, "format"},
		{"num_features", `{"format": "maestro-linear/v1", "num_features": 0, "link": "identity", "weights": [[1]]}`, "num_features: 0"},
		{"link", `{"format": "maestro-linear/v1", "num_features": 1, "link": "probit", "weights": [[1]]}`, `link: "probit"`},
		{"no weights", `{"format": "maestro-linear/v1", "num_features": 1, "link": "identity"}`, "weights: no rows"},
		{"short row", `{"format": "maestro-linear/v1", "num_features": 2, "link": "identity", "weights": [[1, 2], [1]]}`, "weights[1]: 1 coefficients, num_features is 2"},
		{"intercepts", `{"format": "maestro-linear/v1", "num_features": 1, "link": "identity", "weights": [[1]], "intercept": [1, 2]}`, "intercept: 2 values for 1 weight rows"},
		{"softmax one class", `{"format": "maestro-linear/v1", "num_features": 1, "link": "softmax", "weights": [[1]]}`, "softmax"},
		{"names", `{"format": "maestro-linear/v1", "num_features": 2, "link": "identity", "weights": [[1, 2]], "feature_names": ["a"]}`, "feature_names: 1 names for 2 features"},
		{"trailing", `{"format": "maestro-linear/v1", "num_features": 1, "link": "identity", "weights": [[1]]} {}`, "data after"},
		{"string weight", `{"format": "maestro-linear/v1", "num_features": 1, "link": "identity", "weights": [["1"]]}`, "decode"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestBindErrors(t *testing.T) {
	two := sig(2, 1)
	two.Inputs = append(two.Inputs, two.Inputs[0])
	intIn := sig(2, 1)
	intIn.Inputs[0].Datatype = runtime.Int64
	cases := []struct {
		name  string
		model []byte
		sig   runtime.Signature
		want  string
	}{
		{"width", model("identity", "", ""), sig(3, 1), "3 features per row, the model has num_features 2"},
		{"outputs", model("identity", "", ""), sig(2, 2), "2 values per row, the model has 1 outputs"},
		{"labels on identity", model("identity", "", ""), sig(2, 1, runtime.Int64), "need link logistic or softmax"},
		{"two inputs", model("identity", "", ""), two, "2 declared"},
		{"int input", model("identity", "", ""), intIn, "want FP32 or FP64"},
		{"bool output", model("identity", "", ""), sig(2, 1, runtime.Bool), "datatype BOOL"},
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
	m, err := New(model("logistic", "", ""), sig(2, 1))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		in   runtime.Tensor
		want string
	}{
		{"nan", runtime.Tensor{Name: "x", Datatype: runtime.FP32, Shape: []int64{2, 2}, Data: []float32{1, 2, 3, float32(math.NaN())}}, "row 1 element 1 is NaN"},
		{"inf fp64", runtime.Tensor{Name: "x", Datatype: runtime.FP64, Shape: []int64{1, 2}, Data: []float64{math.Inf(1), 2}}, "row 0 element 0 is +Inf"},
		{"name", runtime.Tensor{Name: "q", Datatype: runtime.FP32, Shape: []int64{1, 2}, Data: []float32{1, 2}}, `missing input "x"`},
		{"type", runtime.Tensor{Name: "x", Datatype: runtime.Int32, Shape: []int64{1, 2}, Data: []int32{1, 2}}, "want FP32 or FP64"},
		{"shape", runtime.Tensor{Name: "x", Datatype: runtime.FP32, Shape: []int64{2, 2}, Data: []float32{1, 2}}, "wants 4 elements"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := m.Predict(context.Background(), []runtime.Tensor{c.in})
			if !errors.Is(err, runtime.ErrInvalidInput) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrInvalidInput containing %q", err, c.want)
			}
		})
	}
}

// TestFraudLogistic replays scikit-learn's own predict_proba for the demo
// model, loaded from the model repository as the server loads it.
func TestFraudLogistic(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "examples", "models")
	fx, err := fixture.Load(filepath.Join(dir, "fixtures", "fraud-logistic-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	spec := runtime.Spec{Name: "fraud-logistic", Version: "1", Dir: filepath.Join(dir, "fraud-logistic", "1"), Signature: sig(30, 1)}
	spec.Signature.Inputs[0].Name = "features"
	spec.Signature.Outputs[0].Name = "probability"
	m, err := Load(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Predict(context.Background(), fx.Inputs)
	if err != nil {
		t.Fatal(err)
	}
	if err := fixture.Compare(fx.Outputs[0], got[0], fx.Tolerance); err != nil {
		t.Error(err)
	}
	if m.MemoryBytes() < 31*8 {
		t.Errorf("MemoryBytes %d below the coefficients' size", m.MemoryBytes())
	}
}

func FuzzParse(f *testing.F) {
	f.Add(model("logistic", "", ""))
	f.Add(model("softmax", ", [0.5, 1]", ", -1"))
	if b, err := os.ReadFile(filepath.Join("..", "..", "..", "examples", "models", "fraud-logistic", "1", "model.json")); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"format": "maestro-linear/v1", "num_features": 1e9, "link": "identity", "weights": [[]]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		m, err := New(data, sig(int64(c.NumFeatures), int64(len(c.Weights))))
		if err != nil {
			t.Fatalf("parsed but did not bind to its own shape: %v", err)
		}
		x := make([]float32, c.NumFeatures)
		in := runtime.Tensor{Name: "x", Datatype: runtime.FP32, Shape: []int64{1, int64(c.NumFeatures)}, Data: x}
		if _, err := m.Predict(context.Background(), []runtime.Tensor{in}); err != nil {
			t.Fatalf("predict on zeros: %v", err)
		}
	})
}
