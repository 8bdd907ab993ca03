package builtin_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/runtime/builtin"
	"github.com/maestro-ml/maestro/inference/runtime/fixture"
)

var modelsDir = filepath.Join("..", "..", "..", "examples", "models")

// demoVersion is one version directory of the demo repository.
type demoVersion struct {
	model, version string
	cfg            *repository.Config
}

// demoVersions lists every model version under examples/models, reading
// each config.yaml with the server's own parser.
func demoVersions(t testing.TB) []demoVersion {
	t.Helper()
	entries, err := os.ReadDir(modelsDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []demoVersion
	for _, e := range entries {
		cfgPath := filepath.Join(modelsDir, e.Name(), repository.ConfigFile)
		data, err := os.ReadFile(cfgPath)
		if err != nil {
			continue // fixtures/, train.py and README are not models
		}
		cfg, err := repository.ParseConfig(cfgPath, e.Name(), data)
		if err != nil {
			t.Fatal(err)
		}
		versions, err := os.ReadDir(filepath.Join(modelsDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range versions {
			if n, err := strconv.Atoi(v.Name()); err == nil && n > 0 && v.IsDir() {
				out = append(out, demoVersion{model: e.Name(), version: v.Name(), cfg: cfg})
			}
		}
	}
	return out
}

func load(t testing.TB, reg runtime.Registry, d demoVersion) runtime.Model {
	t.Helper()
	spec := runtime.Spec{
		Name:      d.model,
		Version:   d.version,
		Dir:       filepath.Join(modelsDir, d.model, d.version),
		Signature: d.cfg.Signature(),
		Params:    d.cfg.Parameters,
	}
	m, err := reg.Load(context.Background(), d.cfg.Runtime, spec)
	if err != nil {
		t.Fatalf("load %s v%s: %v", d.model, d.version, err)
	}
	return m
}

// TestDemoFixtures loads every demo model version through the registry and
// replays the training library's own outputs for it: XGBoost's for fraud
// and churn (NaN rows included), scikit-learn's for fraud-logistic, numpy's
// for recommendations.
func TestDemoFixtures(t *testing.T) {
	reg := builtin.Registry()
	versions := demoVersions(t)
	want := map[string]bool{"fraud/1": true, "fraud/2": true, "churn/1": true, "churn/2": true, "fraud-logistic/1": true, "recommendations/1": true}
	for _, d := range versions {
		delete(want, d.model+"/"+d.version)
	}
	if len(want) > 0 {
		t.Fatalf("demo versions missing from %s: %v", modelsDir, want)
	}
	for _, d := range versions {
		t.Run(d.model+"/"+d.version, func(t *testing.T) {
			m := load(t, reg, d)
			fx, err := fixture.Load(filepath.Join(modelsDir, "fixtures", fmt.Sprintf("%s-v%s.json", d.model, d.version)))
			if err != nil {
				t.Fatal(err)
			}
			if fx.ModelName != d.model || fx.ModelVersion != d.version {
				t.Fatalf("fixture is for %s v%s", fx.ModelName, fx.ModelVersion)
			}
			got, err := m.Predict(context.Background(), fx.Inputs)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(fx.Outputs) {
				t.Fatalf("%d outputs, fixture has %d", len(got), len(fx.Outputs))
			}
			for i := range got {
				if err := fixture.Compare(fx.Outputs[i], got[i], fx.Tolerance); err != nil {
					t.Error(err)
				}
			}
			if mb := m.MemoryBytes(); mb <= 0 {
				t.Errorf("MemoryBytes %d", mb)
			}
		})
	}
}

// TestDemoArtifactsSmall keeps the committed artifacts small enough for the
// repository (each well under 2 MB).
func TestDemoArtifactsSmall(t *testing.T) {
	const limit = 1 << 20
	for _, d := range demoVersions(t) {
		dir := filepath.Join(modelsDir, d.model, d.version)
		files, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			info, err := f.Info()
			if err != nil {
				t.Fatal(err)
			}
			if info.Size() > limit {
				t.Errorf("%s: %d bytes, over %d", filepath.Join(dir, f.Name()), info.Size(), limit)
			}
		}
	}
}

func TestUnknownRuntime(t *testing.T) {
	_, err := builtin.Registry().Load(context.Background(), "onnx", runtime.Spec{})
	if err == nil {
		t.Fatal("loaded an unknown runtime")
	}
}

// TestEmptyBatch sends every demo model a batch of zero rows: each must
// answer with every output, zero rows long, rather than fail or panic.
func TestEmptyBatch(t *testing.T) {
	reg := builtin.Registry()
	for _, d := range demoVersions(t) {
		t.Run(d.model+"/"+d.version, func(t *testing.T) {
			m := load(t, reg, d)
			sig := d.cfg.Signature()
			var inputs []runtime.Tensor
			for _, in := range sig.Inputs {
				shape := append([]int64{0}, in.Shape[1:]...)
				var data any
				switch in.Datatype {
				case runtime.FP32:
					data = []float32{}
				case runtime.Int64:
					data = []int64{}
				default:
					t.Fatalf("test does not build %s inputs", in.Datatype)
				}
				inputs = append(inputs, runtime.Tensor{Name: in.Name, Datatype: in.Datatype, Shape: shape, Data: data})
			}
			out, err := m.Predict(context.Background(), inputs)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != len(sig.Outputs) {
				t.Fatalf("%d outputs, want %d", len(out), len(sig.Outputs))
			}
			for _, o := range out {
				if len(o.Shape) == 0 || o.Shape[0] != 0 || o.Elements() != 0 {
					t.Errorf("output %q shape %v, want zero rows", o.Name, o.Shape)
				}
			}
		})
	}
}

// TestConcurrentPredict runs every demo model from several goroutines at
// once (run with -race): Predict must be safe for concurrent use and give
// every caller the fixture's answer.
func TestConcurrentPredict(t *testing.T) {
	reg := builtin.Registry()
	for _, d := range demoVersions(t) {
		t.Run(d.model+"/"+d.version, func(t *testing.T) {
			m := load(t, reg, d)
			fx, err := fixture.Load(filepath.Join(modelsDir, "fixtures", fmt.Sprintf("%s-v%s.json", d.model, d.version)))
			if err != nil {
				t.Fatal(err)
			}
			g, ctx := errgroup.WithContext(context.Background())
			for range 4 {
				g.Go(func() error {
					for range 5 {
						got, err := m.Predict(ctx, fx.Inputs)
						if err != nil {
							return err
						}
						for i := range got {
							if err := fixture.Compare(fx.Outputs[i], got[i], fx.Tolerance); err != nil {
								return err
							}
						}
					}
					return nil
				})
			}
			if err := g.Wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
