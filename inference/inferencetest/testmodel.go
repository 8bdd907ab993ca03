package inferencetest

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/runtime/builtin"
)

// RuntimeName is the config.yaml runtime of this package's test runtime.
const RuntimeName = "inferencetest"

// Registry is the registry test servers use by default: every runtime
// Maestro ships (xgboost, linear, embedding) plus this package's test
// runtime.
func Registry() runtime.Registry {
	r := builtin.Registry()
	r[RuntimeName] = LoadTestModel
	return r
}

// TestModel describes a model for WriteModel. Its runtime computes, for
// each row of its one FP32 input "x" ([Features] per row), the output
// "y" = sum(row)*Scale + bias, where each version has its own bias. So an
// answer shows which version computed it.
type TestModel struct {
	Name     string
	Features int       // default 4
	Biases   []float64 // one version per entry, numbered from 1; default {0}
	// MaxBatchSize > 0 gives x and y a leading batch dimension; default 0
	// means 1024. Set -1 for a model without batching (x is [Features]).
	MaxBatchSize int64
	Scale        float64 // default 1
	// MemoryBytes is what the loaded model claims to hold; default 1024.
	MemoryBytes int64
	// QueueDelay > 0 turns on dynamic batching with this max queue delay.
	QueueDelay time.Duration
	// PreferredBatchSizes for dynamic batching.
	PreferredBatchSizes []int64
}

// WriteModel writes m into the repository dir (creating it) in the layout
// the server reads: dir/<name>/config.yaml and dir/<name>/<version>/bias.
func WriteModel(t testing.TB, dir string, m TestModel) {
	t.Helper()
	if m.Features == 0 {
		m.Features = 4
	}
	if len(m.Biases) == 0 {
		m.Biases = []float64{0}
	}
	switch {
	case m.MaxBatchSize == 0:
		m.MaxBatchSize = 1024
	case m.MaxBatchSize < 0:
		m.MaxBatchSize = 0
	}
	if m.Scale == 0 {
		m.Scale = 1
	}
	if m.MemoryBytes == 0 {
		m.MemoryBytes = 1024
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\nruntime: %s\nmax_batch_size: %d\n", m.Name, RuntimeName, m.MaxBatchSize)
	fmt.Fprintf(&b, "inputs:\n  - {name: x, datatype: FP32, shape: [%d]}\n", m.Features)
	fmt.Fprintf(&b, "outputs:\n  - {name: y, datatype: FP32, shape: [1]}\n")
	if m.QueueDelay > 0 {
		fmt.Fprintf(&b, "dynamic_batching:\n  max_queue_delay_microseconds: %d\n", m.QueueDelay.Microseconds())
		if len(m.PreferredBatchSizes) > 0 {
			s := make([]string, len(m.PreferredBatchSizes))
			for i, p := range m.PreferredBatchSizes {
				s[i] = strconv.FormatInt(p, 10)
			}
			fmt.Fprintf(&b, "  preferred_batch_size: [%s]\n", strings.Join(s, ", "))
		}
	}
	fmt.Fprintf(&b, "parameters:\n  scale: %q\n  memory_bytes: %q\n",
		strconv.FormatFloat(m.Scale, 'g', -1, 64), strconv.FormatInt(m.MemoryBytes, 10))
	mdir := filepath.Join(dir, m.Name)
	write(t, filepath.Join(mdir, "config.yaml"), b.String())
	for i, bias := range m.Biases {
		write(t, filepath.Join(mdir, strconv.Itoa(i+1), "bias"), strconv.FormatFloat(bias, 'g', -1, 64))
	}
}

func write(t testing.TB, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("inferencetest: %v", err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatalf("inferencetest: %v", err)
	}
}

// testModel is the loaded form of a TestModel version.
type testModel struct {
	in, out     runtime.TensorSpec
	scale, bias float64
	bytes       int64
}

// LoadTestModel loads a TestModel version. The version's "bias" file holds
// its bias; the words "fail" or "panic" there make the load fail or panic,
// for tests of broken models.
func LoadTestModel(_ context.Context, spec runtime.Spec) (runtime.Model, error) {
	if len(spec.Signature.Inputs) != 1 || len(spec.Signature.Outputs) != 1 {
		return nil, fmt.Errorf("test runtime: want one input and one output")
	}
	data, err := os.ReadFile(filepath.Join(spec.Dir, "bias"))
	if err != nil {
		return nil, fmt.Errorf("test runtime: %w", err)
	}
	text := strings.TrimSpace(string(data))
	switch text {
	case "fail":
		return nil, fmt.Errorf("test runtime: artifact %s says fail", filepath.Join(spec.Dir, "bias"))
	case "panic":
		panic("test runtime: artifact says panic")
	}
	m := &testModel{in: spec.Signature.Inputs[0], out: spec.Signature.Outputs[0], scale: 1, bytes: 1024}
	if m.bias, err = strconv.ParseFloat(text, 64); err != nil {
		return nil, fmt.Errorf("test runtime: bias: %w", err)
	}
	if s, ok := spec.Params["scale"]; ok {
		if m.scale, err = strconv.ParseFloat(s, 64); err != nil {
			return nil, fmt.Errorf("test runtime: scale: %w", err)
		}
	}
	if s, ok := spec.Params["memory_bytes"]; ok {
		if m.bytes, err = strconv.ParseInt(s, 10, 64); err != nil {
			return nil, fmt.Errorf("test runtime: memory_bytes: %w", err)
		}
	}
	return m, nil
}

func (m *testModel) MemoryBytes() int64 { return m.bytes }

// Predict computes y = sum(row)*scale + bias per row. NaN inputs are
// invalid, so tests can exercise a runtime's own input checks.
func (m *testModel) Predict(_ context.Context, inputs []runtime.Tensor) ([]runtime.Tensor, error) {
	if len(inputs) != 1 {
		return nil, fmt.Errorf("test runtime: want 1 input, got %d: %w", len(inputs), runtime.ErrInvalidInput)
	}
	x, ok := inputs[0].Data.([]float32)
	if !ok {
		return nil, fmt.Errorf("test runtime: input %q: want FP32 data: %w", inputs[0].Name, runtime.ErrInvalidInput)
	}
	features := int(m.in.Shape[len(m.in.Shape)-1])
	rows := len(x) / features
	if rows*features != len(x) {
		return nil, fmt.Errorf("test runtime: input %q: %d values are not rows of %d: %w", inputs[0].Name, len(x), features, runtime.ErrInvalidInput)
	}
	y := make([]float32, rows)
	for r := range rows {
		sum := 0.0
		for _, v := range x[r*features : (r+1)*features] {
			if math.IsNaN(float64(v)) {
				return nil, fmt.Errorf("test runtime: input %q row %d: NaN is not allowed: %w", inputs[0].Name, r, runtime.ErrInvalidInput)
			}
			sum += float64(v)
		}
		y[r] = float32(sum*m.scale + m.bias)
	}
	shape := []int64{int64(rows), 1}
	if len(m.out.Shape) == 1 {
		shape = []int64{1}
	}
	return []runtime.Tensor{{Name: m.out.Name, Datatype: runtime.FP32, Shape: shape, Data: y}}, nil
}
