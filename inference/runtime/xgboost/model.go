// Package xgboost evaluates XGBoost gradient-boosted tree models saved as
// JSON (Booster.save_model("m.json"), XGBoost 1.x and 2.x) in pure Go.
//
// Supported: the gbtree booster with objectives binary:logistic,
// binary:logitraw, reg:logistic, reg:squarederror, multi:softprob and
// multi:softmax; missing values (NaN) follow each split's default_left;
// base_score in its 1.x ("5E-1") and 2.x ("[5E-1]") forms. Refused with an
// error at load: dart and gblinear boosters, categorical splits,
// multi-target (vector-leaf) trees and other objectives.
//
// Predictions match XGBoost's to 1e-5: thresholds and leaf values stay
// float32, a feature goes left when x < threshold in float32, and leaf
// values are summed in float32 in tree order from the base margin.
//
// # Binding to config.yaml
//
// The model has one input, FP32 (or FP64), whose row width equals the
// model's num_feature. Each declared output is filled by datatype:
//   - FP32 or FP64: the predictions, num_class values per row for
//     multi:softprob, one otherwise (the class index for multi:softmax);
//   - INT32 or INT64 (classifiers only): the predicted class, argmax for
//     multi-class, probability > 0.5 for binary:logistic, margin > 0 for
//     binary:logitraw.
//
// Parameters: "model_file" names the artifact in the version directory
// (default "model.json").
package xgboost

import (
	"context"
	"fmt"
	"time"

	"github.com/maestro-ml/maestro/inference/runtime"
)

// DefaultFile is the artifact name in a version directory.
const DefaultFile = "model.json"

// Load reads spec.Dir/model.json (or the "model_file" parameter) and binds
// it to spec's signature. It is a runtime.Loader.
//
// # Errors
//
// Names the file and the offending JSON field or config.yaml tensor when the
// artifact is unreadable, unsupported or disagrees with the signature.
func Load(ctx context.Context, spec runtime.Spec) (runtime.Model, error) {
	start := time.Now()
	path, data, err := runtime.ReadArtifact(ctx, spec, DefaultFile, "xgboost model")
	if err != nil {
		return nil, err
	}
	m, err := New(data, spec.Signature)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.loadTime = time.Since(start)
	return m, nil
}

// Model is a loaded XGBoost model bound to a signature. It is safe for
// concurrent use.
type Model struct {
	e        *ensemble
	input    runtime.TensorSpec
	width    int
	outputs  []runtime.ScoreOutput
	loadTime time.Duration
}

// New parses an XGBoost JSON model and binds it to sig.
func New(data []byte, sig runtime.Signature) (*Model, error) {
	e, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("parse xgboost json: %w", err)
	}
	m := &Model{e: e}
	in, err := runtime.FeatureInput(sig, "an xgboost model", e.numFeature, "num_feature")
	if err != nil {
		return nil, err
	}
	m.input, m.width = in, e.numFeature
	noLabels := ""
	if e.transform == identity && e.objective != "binary:logitraw" {
		noLabels = "class labels need a classifier, objective is " + e.objective
	}
	widthNote := fmt.Sprintf("objective %s gives %d", e.objective, e.outWidth())
	if m.outputs, err = runtime.BindScoreOutputs(sig.Outputs, e.outWidth(), widthNote, noLabels); err != nil {
		return nil, err
	}
	return m, nil
}

// Predict evaluates a batch of feature rows. See the package comment for
// how outputs are filled.
func (m *Model) Predict(ctx context.Context, inputs []runtime.Tensor) ([]runtime.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t, err := runtime.Find(inputs, m.input.Name)
	if err != nil {
		return nil, err
	}
	x, err := runtime.Float32s(t)
	if err != nil {
		return nil, err
	}
	rows, err := runtime.Rows(t, m.width, len(x))
	if err != nil {
		return nil, err
	}
	if !m.input.Batched() && rows != 1 {
		return nil, fmt.Errorf("%w: input %q: %d rows for a model without a batch dimension", runtime.ErrInvalidInput, t.Name, rows)
	}
	e := m.e
	// One allocation for the predictions, the margins and the scratch
	// space: for a row or a few, the allocations cost more than the trees.
	// The predictions come first and are capped, since they are returned.
	np, nm := rows*e.outWidth(), rows*e.numGroup
	buf := make([]float32, np+nm+e.scratchLen(rows))
	pred, margin := buf[:np:np], buf[np:np+nm:np+nm]
	e.predict(x, rows, margin, pred, buf[np+nm:])

	out := make([]runtime.Tensor, len(m.outputs))
	usedPred := false
	for i, o := range m.outputs {
		ot := runtime.Tensor{Name: o.Spec.Name, Datatype: o.Spec.Datatype, Shape: runtime.OutputShape(o.Spec, rows, 0)}
		switch {
		case !o.Labels && o.Spec.Datatype == runtime.FP32:
			if usedPred {
				ot.Data = append([]float32(nil), pred...)
			} else {
				ot.Data, usedPred = pred, true
			}
		case !o.Labels:
			d := make([]float64, len(pred))
			for j, v := range pred {
				d[j] = float64(v)
			}
			ot.Data = d
		default:
			ot.Data = m.labels(rows, margin, pred, o.Spec.Datatype)
		}
		out[i] = ot
	}
	return out, nil
}

// labels is the predicted class per row, as INT64 or INT32 data.
func (m *Model) labels(rows int, margin, pred []float32, dt runtime.Datatype) any {
	e := m.e
	class := func(r int) int {
		switch e.transform {
		case softprob:
			return argmax(pred[r*e.numGroup : (r+1)*e.numGroup])
		case softmax:
			return int(pred[r])
		case sigmoid:
			return b2i(pred[r] > 0.5)
		default: // binary:logitraw
			return b2i(margin[r] > 0)
		}
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

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// MemoryBytes estimates the memory the flattened trees hold.
func (m *Model) MemoryBytes() int64 { return m.e.memoryBytes() + 512 }

// Info describes a loaded model for logs and metadata.
type Info struct {
	Objective  string
	Version    []int // the XGBoost version that saved the model
	Trees      int
	Nodes      int
	MaxDepth   int
	NumFeature int
	NumGroup   int
	LoadTime   time.Duration // zero unless loaded by Load
}

// Info returns the model's description.
func (m *Model) Info() Info {
	e := m.e
	return Info{
		Objective: e.objective, Version: e.version, Trees: len(e.roots), Nodes: len(e.nodes) - 1,
		MaxDepth: e.maxDepth, NumFeature: e.numFeature, NumGroup: e.numGroup, LoadTime: m.loadTime,
	}
}
