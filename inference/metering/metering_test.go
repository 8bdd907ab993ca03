package metering

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime"
)

// spinModel burns spin of thread CPU time per evaluation, measured on its
// own thread, and fails when fail is set.
type spinModel struct {
	spin time.Duration
	fail error
}

func (m spinModel) Predict(_ context.Context, in []runtime.Tensor) ([]runtime.Tensor, error) {
	if m.spin == 0 {
		return in, m.fail
	}
	start, ok := threadCPU()
	for ok {
		now, _ := threadCPU()
		if now-start >= m.spin {
			break
		}
	}
	return in, m.fail
}

func (spinModel) MemoryBytes() int64 { return 1 << 20 }

func batchedSig() runtime.Signature {
	return runtime.Signature{Inputs: []runtime.TensorSpec{{Name: "x", Datatype: runtime.FP32, Shape: []int64{-1, 4}}}}
}

func rowsOf(n int64) []runtime.Tensor {
	return []runtime.Tensor{{Name: "x", Datatype: runtime.FP32, Shape: []int64{n, 4}, Data: make([]float32, n*4)}}
}

func load(t testing.TB, m *Meter, mod runtime.Model, sig runtime.Signature) runtime.Model {
	t.Helper()
	reg := m.Wrap(runtime.Registry{"spin": func(context.Context, runtime.Spec) (runtime.Model, error) { return mod, nil }})
	got, err := reg.Load(context.Background(), "spin", runtime.Spec{Name: "fraud", Version: "2", Signature: sig})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestMeterChargesEvaluations(t *testing.T) {
	if _, ok := threadCPU(); !ok {
		t.Skip("thread CPU time is not measured on " + goruntime.GOOS)
	}
	const spin = 20 * time.Millisecond
	bad := errors.New("bad row")
	tests := []struct {
		name      string
		sig       runtime.Signature
		inputs    []runtime.Tensor
		fail      error
		wantPreds float64
	}{
		{"batch of 8 rows", batchedSig(), rowsOf(8), nil, 8},
		{"unbatched model", runtime.Signature{Inputs: []runtime.TensorSpec{{Name: "x", Shape: []int64{4}}}}, []runtime.Tensor{{Name: "x", Shape: []int64{4}}}, nil, 1},
		{"failed evaluation costs CPU, predicts nothing", batchedSig(), rowsOf(3), bad, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := New(prometheus.NewRegistry())
			mod := load(t, m, spinModel{spin: spin, fail: tc.fail}, tc.sig)
			if _, err := mod.Predict(context.Background(), tc.inputs); !errors.Is(err, tc.fail) {
				t.Fatalf("Predict error %v, want %v", err, tc.fail)
			}
			cpu := value(t, m.cpu.WithLabelValues("fraud", "2"))
			// Thread CPU time does not grow while the thread waits for a
			// core, so the figure holds on a loaded machine; the margin is
			// the meter's own two clock reads.
			if cpu < spin.Seconds() || cpu > spin.Seconds()+0.002 {
				t.Errorf("cpu = %.6fs, want %.3fs (+2ms at most)", cpu, spin.Seconds())
			}
			if got := value(t, m.predictions.WithLabelValues("fraud", "2")); got != tc.wantPreds {
				t.Errorf("predictions = %v, want %v", got, tc.wantPreds)
			}
		})
	}
}

func TestWrapKeepsLoaderErrors(t *testing.T) {
	m := New(prometheus.NewRegistry())
	boom := errors.New("boom")
	reg := m.Wrap(runtime.Registry{
		"broken": func(context.Context, runtime.Spec) (runtime.Model, error) { return nil, boom },
		"nil":    func(context.Context, runtime.Spec) (runtime.Model, error) { return nil, nil },
	})
	if _, err := reg.Load(context.Background(), "broken", runtime.Spec{}); !errors.Is(err, boom) {
		t.Errorf("broken loader: err %v, want %v", err, boom)
	}
	// The repository reports a nil model itself; the wrapper must not hide
	// it behind a non-nil wrapper.
	if mod, err := reg.Load(context.Background(), "nil", runtime.Spec{}); mod != nil || err != nil {
		t.Errorf("nil loader: got %v, %v; want nil, nil", mod, err)
	}
}

func TestResidentFollowsTheCache(t *testing.T) {
	dir := t.TempDir()
	m := New(prometheus.NewRegistry())
	reg := runtime.Registry{"spin": func(context.Context, runtime.Spec) (runtime.Model, error) { return spinModel{}, nil }}
	writeRepo(t, dir, "a", "b")
	repo, err := repository.New(repository.Options{Dir: dir, Registry: m.Wrap(reg), MaxLoaded: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(repo.Close)
	promReg := prometheus.NewRegistry()
	RegisterResident(promReg, repo)
	steps := []struct {
		get  string
		want string
	}{
		{"a", `maestro_inference_model_memory_bytes{model="a",version="1"} 1.048576e+06`},
		// MaxLoaded 1 evicts a: only b is charged from now on.
		{"b", `maestro_inference_model_memory_bytes{model="b",version="1"} 1.048576e+06`},
	}
	for _, s := range steps {
		if _, err := repo.Get(context.Background(), s.get, ""); err != nil {
			t.Fatal(err)
		}
		if got := gathered(t, promReg, "maestro_inference_model_memory_bytes"); got != s.want {
			t.Errorf("after loading %s: got series\n%s\nwant\n%s", s.get, got, s.want)
		}
	}
}

// fakeThread is a thread clock that only a fakeModel advances.
type fakeThread struct{ now time.Duration }

func (f *fakeThread) read() (time.Duration, bool) { return f.now, true }

// fakeModel costs costs[i % len(costs)] of fake CPU on its i-th call.
type fakeModel struct {
	clock *fakeThread
	costs []time.Duration
	calls int
}

func (f *fakeModel) Predict(_ context.Context, in []runtime.Tensor) ([]runtime.Tensor, error) {
	f.clock.now += f.costs[f.calls%len(f.costs)]
	f.calls++
	return in, nil
}

func (f *fakeModel) MemoryBytes() int64 { return 0 }

// TestSampledEstimate checks that cheap models, measured on a sample of
// their batches, are still charged their true CPU: the estimate is
// unbiased, and a random sample cannot alias with a periodic pattern of
// batch costs as measuring every n-th batch would.
func TestSampledEstimate(t *testing.T) {
	tests := []struct {
		name      string
		costs     []time.Duration
		wantShare float64 // share of batches measured, in the end
	}{
		{"cheap model", []time.Duration{10 * time.Microsecond}, 0.05},
		{"cheaper than the floor", []time.Duration{time.Microsecond}, minShare},
		{"alternating costs", []time.Duration{2 * time.Microsecond, 38 * time.Microsecond}, 0.1},
		{"expensive model: every batch", []time.Duration{exactAbove}, 1},
	}
	const batches = 200_000
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeThread{}
			m := New(prometheus.NewRegistry())
			rng := rand.New(rand.NewPCG(7, 11))
			mod := &model{Model: &fakeModel{clock: clock, costs: tc.costs}, cpu: m.cpu.WithLabelValues("m", "1"),
				predictions: m.predictions.WithLabelValues("m", "1"), clock: clock.read, random: rng.Float64}
			for range batches {
				if _, err := mod.Predict(context.Background(), nil); err != nil {
					t.Fatal(err)
				}
			}
			got, want := value(t, m.cpu.WithLabelValues("m", "1")), clock.now.Seconds()
			if math.Abs(got-want)/want > 0.03 {
				t.Errorf("charged %.4fs, true CPU %.4fs: off by %.1f%% (> 3%%)", got, want, 100*math.Abs(got-want)/want)
			}
			if share := mod.share(); math.Abs(share-tc.wantShare) > tc.wantShare*0.5 {
				t.Errorf("share measured %.4f, want about %.4f", share, tc.wantShare)
			}
		})
	}
}

// BenchmarkMeterOverhead measures what metering adds to one evaluation of
// a model that costs nothing: sampled (what a cheap model gets) and on
// every batch (pinning the goroutine and two thread-clock reads).
func BenchmarkMeterOverhead(b *testing.B) {
	in := rowsOf(1)
	ctx := context.Background()
	for _, mode := range []string{"plain", "sampled", "every-batch"} {
		b.Run(mode, func(b *testing.B) {
			var mod runtime.Model = spinModel{}
			if mode != "plain" {
				mod = load(b, New(prometheus.NewRegistry()), mod, batchedSig())
			}
			b.ReportAllocs()
			for b.Loop() {
				if mode == "every-batch" {
					mod.(*model).mean.Store(math.Float64bits(1)) // as if batches took 1 s
				}
				if _, err := mod.Predict(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
