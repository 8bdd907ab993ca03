// Package linear evaluates linear and logistic regression models from a
// small JSON coefficients file:
//
//	{
//	  "format": "maestro-linear/v1",
//	  "num_features": 30,
//	  "link": "logistic",
//	  "weights": [[0.12, -0.5, ...]],
//	  "intercept": [-3.1],
//	  "source": "sklearn 1.2.1 LogisticRegression"
//	}
//
// weights has one row of num_features coefficients per output; intercept
// one value per output (all zero when absent). link is "identity" (linear
// regression), "logistic" (each output 1/(1+exp(-z)), as scikit-learn's
// binary or one-vs-rest logistic regression) or "softmax" (multinomial).
// Sums are float64, as scikit-learn computes them.
//
// # Binding to config.yaml
//
// One FP32 or FP64 input whose row width is num_features; NaN and infinities
// are refused. FP32/FP64 outputs receive the predictions (one value per
// model output); INT32/INT64 outputs receive the predicted class (p > 0.5
// for a single logistic output, argmax otherwise). Parameter "model_file"
// names the artifact (default "model.json").
package linear

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/maestro-ml/maestro/inference/runtime"
)

// Format is the value of the file's "format" field.
const Format = "maestro-linear/v1"

// DefaultFile is the artifact name in a version directory.
const DefaultFile = "model.json"

const maxFeatures = 1 << 20

type link uint8

const (
	identity link = iota
	logistic
	softmax
)

func parseLink(s string) (link, bool) {
	switch s {
	case "identity":
		return identity, true
	case "logistic":
		return logistic, true
	case "softmax":
		return softmax, true
	}
	return 0, false
}

type fileJSON struct {
	Format       string      `json:"format"`
	NumFeatures  int         `json:"num_features"`
	Link         string      `json:"link"`
	Weights      [][]float64 `json:"weights"`
	Intercept    []float64   `json:"intercept"`
	Source       string      `json:"source"`
	FeatureNames []string    `json:"feature_names"`
}

// Coefficients is a parsed, validated linear model.
type Coefficients struct {
	NumFeatures int
	Link        string
	Weights     [][]float64 // [output][feature]
	Intercept   []float64   // [output]
}

// Parse decodes and validates a coefficients file. Unknown fields are
// errors, so a typo does not silently drop a coefficient.
func Parse(data []byte) (*Coefficients, error) {
	var f fileJSON
	if err := runtime.DecodeJSON(data, &f); err != nil {
		return nil, err
	}
	if f.Format != Format {
		return nil, fmt.Errorf("format: %q, want %q", f.Format, Format)
	}
	if f.NumFeatures < 1 || f.NumFeatures > maxFeatures {
		return nil, fmt.Errorf("num_features: %d out of range [1, %d]", f.NumFeatures, maxFeatures)
	}
	if _, ok := parseLink(f.Link); !ok {
		return nil, fmt.Errorf("link: %q, want identity, logistic or softmax", f.Link)
	}
	if len(f.Weights) == 0 {
		return nil, errors.New("weights: no rows, want one per output")
	}
	if f.Link == "softmax" && len(f.Weights) < 2 {
		return nil, fmt.Errorf("weights: %d row for softmax, want one per class (at least 2)", len(f.Weights))
	}
	for o, row := range f.Weights {
		if len(row) != f.NumFeatures {
			return nil, fmt.Errorf("weights[%d]: %d coefficients, num_features is %d", o, len(row), f.NumFeatures)
		}
		for i, w := range row {
			if math.IsNaN(w) || math.IsInf(w, 0) {
				return nil, fmt.Errorf("weights[%d][%d]: not finite", o, i)
			}
		}
	}
	if f.Intercept == nil {
		f.Intercept = make([]float64, len(f.Weights))
	}
	if len(f.Intercept) != len(f.Weights) {
		return nil, fmt.Errorf("intercept: %d values for %d weight rows", len(f.Intercept), len(f.Weights))
	}
	if f.FeatureNames != nil && len(f.FeatureNames) != f.NumFeatures {
		return nil, fmt.Errorf("feature_names: %d names for %d features", len(f.FeatureNames), f.NumFeatures)
	}
	return &Coefficients{NumFeatures: f.NumFeatures, Link: f.Link, Weights: f.Weights, Intercept: f.Intercept}, nil
}

// Load reads spec.Dir/model.json (or the "model_file" parameter) and binds
// it to spec's signature. It is a runtime.Loader.
func Load(ctx context.Context, spec runtime.Spec) (runtime.Model, error) {
	path, data, err := runtime.ReadArtifact(ctx, spec, DefaultFile, "linear model")
	if err != nil {
		return nil, err
	}
	m, err := New(data, spec.Signature)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Model is a linear model bound to a signature, safe for concurrent use.
type Model struct {
	link      link
	nf, nout  int
	weights   []float64 // row-major [output][feature]
	intercept []float64
	input     runtime.TensorSpec
	outputs   []runtime.ScoreOutput
}

// New parses a coefficients file and binds it to sig.
func New(data []byte, sig runtime.Signature) (*Model, error) {
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("parse linear model: %w", err)
	}
	lk, _ := parseLink(c.Link)
	m := &Model{link: lk, nf: c.NumFeatures, nout: len(c.Weights), intercept: c.Intercept}
	m.weights = make([]float64, 0, m.nf*m.nout)
	for _, row := range c.Weights {
		m.weights = append(m.weights, row...)
	}
	in, err := runtime.FeatureInput(sig, "a linear model", m.nf, "num_features")
	if err != nil {
		return nil, err
	}
	m.input = in
	noLabels := ""
	if m.link == identity {
		noLabels = "class labels need link logistic or softmax, not identity"
	}
	if m.outputs, err = runtime.BindScoreOutputs(sig.Outputs, m.nout, fmt.Sprintf("the model has %d outputs", m.nout), noLabels); err != nil {
		return nil, err
	}
	return m, nil
}

// Predict evaluates a batch of feature rows.
func (m *Model) Predict(ctx context.Context, inputs []runtime.Tensor) ([]runtime.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t, err := runtime.Find(inputs, m.input.Name)
	if err != nil {
		return nil, err
	}
	var rows int
	var pred []float64
	switch d := t.Data.(type) {
	case []float32:
		if rows, err = runtime.Rows(t, m.nf, len(d)); err != nil {
			return nil, err
		}
		if err := runtime.CheckFinite(t.Name, d, m.nf); err != nil {
			return nil, err
		}
		pred = make([]float64, rows*m.nout)
		score(m, d, rows, pred)
	case []float64:
		if rows, err = runtime.Rows(t, m.nf, len(d)); err != nil {
			return nil, err
		}
		for i, v := range d {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%w: input %q: row %d element %d is %v, which this model does not accept", runtime.ErrInvalidInput, t.Name, i/m.nf, i%m.nf, v)
			}
		}
		pred = make([]float64, rows*m.nout)
		score(m, d, rows, pred)
	default:
		return nil, fmt.Errorf("%w: input %q: datatype %s (data %T), want FP32 or FP64", runtime.ErrInvalidInput, t.Name, t.Datatype, t.Data)
	}
	if !m.input.Batched() && rows != 1 {
		return nil, fmt.Errorf("%w: input %q: %d rows for a model without a batch dimension", runtime.ErrInvalidInput, t.Name, rows)
	}
	out := make([]runtime.Tensor, len(m.outputs))
	for i, o := range m.outputs {
		ot := runtime.Tensor{Name: o.Spec.Name, Datatype: o.Spec.Datatype, Shape: runtime.OutputShape(o.Spec, rows, 0)}
		switch {
		case o.Labels:
			ot.Data = m.labels(pred, rows, o.Spec.Datatype)
		case o.Spec.Datatype == runtime.FP64:
			ot.Data = append([]float64(nil), pred...)
		default:
			d := make([]float32, len(pred))
			for j, v := range pred {
				d[j] = float32(v)
			}
			ot.Data = d
		}
		out[i] = ot
	}
	return out, nil
}

// score writes the linked predictions for rows rows of x into pred.
func score[T float32 | float64](m *Model, x []T, rows int, pred []float64) {
	for r := 0; r < rows; r++ {
		z := pred[r*m.nout : (r+1)*m.nout]
		row := x[r*m.nf : (r+1)*m.nf]
		for o := range z {
			w := m.weights[o*m.nf : (o+1)*m.nf]
			w = w[:len(row)]
			s := m.intercept[o]
			for i, v := range row {
				s += w[i] * float64(v)
			}
			z[o] = s
		}
		m.apply(z)
	}
}

func (m *Model) apply(z []float64) {
	switch m.link {
	case logistic:
		for i, v := range z {
			z[i] = 1 / (1 + math.Exp(-v))
		}
	case softmax:
		hi := z[0]
		for _, v := range z[1:] {
			hi = max(hi, v)
		}
		var sum float64
		for i, v := range z {
			z[i] = math.Exp(v - hi)
			sum += z[i]
		}
		for i := range z {
			z[i] /= sum
		}
	}
}

func (m *Model) labels(pred []float64, rows int, dt runtime.Datatype) any {
	class := func(r int) int {
		p := pred[r*m.nout : (r+1)*m.nout]
		if len(p) == 1 {
			if p[0] > 0.5 {
				return 1
			}
			return 0
		}
		best := 0
		for i, v := range p {
			if v > p[best] {
				best = i
			}
		}
		return best
	}
	if dt == runtime.Int32 {
		d := make([]int32, rows)
		for r := range d {
			d[r] = int32(class(r))
		}
		return d
	}
	d := make([]int64, rows)
	for r := range d {
		d[r] = int64(class(r))
	}
	return d
}

// MemoryBytes estimates the memory the coefficients hold.
func (m *Model) MemoryBytes() int64 {
	return int64(len(m.weights)+len(m.intercept))*8 + 512
}
