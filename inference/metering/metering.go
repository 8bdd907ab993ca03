// Package metering measures what each model version costs the inference
// server: the CPU time of its evaluations and the memory it holds loaded,
// exported as Prometheus series that `maestro cost` turns into money.
//
// CPU is measured per evaluated batch, as the thread CPU time of the
// goroutine that runs the model, pinned to its OS thread for the call. A
// batch belongs to one model version, so all of its requests' shares land
// in that version's counter. Cheap models are measured on a random sample
// of their batches, scaled up (see exactAbove). Work outside the model (decoding, gRPC, the
// batcher's queue) is the server's overhead, left in the process's own
// process_cpu_seconds_total.
package metering

import (
	"context"
	"math"
	"math/rand/v2"
	goruntime "runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// Meter holds the per-model cost series of one server.
type Meter struct {
	cpu         *prometheus.CounterVec
	predictions *prometheus.CounterVec
}

// New registers the model CPU and prediction counters on reg.
func New(reg prometheus.Registerer) *Meter {
	ns, sub := telemetry.Namespace, "inference"
	mv := []string{"model", "version"}
	m := &Meter{
		cpu: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "model_cpu_seconds_total", Help: "CPU time spent evaluating the model version (thread CPU time of its batches)."}, mv),
		predictions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "model_predictions_total", Help: "Rows the model version evaluated successfully (one prediction per row)."}, mv),
	}
	reg.MustRegister(m.cpu, m.predictions)
	return m
}

// Wrap returns a copy of r whose loaders return metered models, so that
// every evaluation of every runtime is measured where it runs: on the
// request's goroutine, or on the dynamic batcher's for merged batches.
func (m *Meter) Wrap(r runtime.Registry) runtime.Registry {
	out := make(runtime.Registry, len(r))
	for name, load := range r {
		out[name] = func(ctx context.Context, spec runtime.Spec) (runtime.Model, error) {
			mod, err := load(ctx, spec)
			if err != nil || mod == nil {
				return mod, err
			}
			return &model{
				Model:       mod,
				cpu:         m.cpu.WithLabelValues(spec.Name, spec.Version),
				predictions: m.predictions.WithLabelValues(spec.Name, spec.Version),
				batched:     batchedSignature(spec.Signature),
				clock:       threadCPU,
				random:      rand.Float64,
			}, nil
		}
	}
	return out
}

// batchedSignature reports whether inputs carry a leading batch dimension,
// which the repository adds to every input of a model with max_batch_size.
func batchedSignature(sig runtime.Signature) bool {
	return len(sig.Inputs) > 0 && len(sig.Inputs[0].Shape) > 0 && sig.Inputs[0].Shape[0] == -1
}

// Sampling. Reading the thread clock twice costs about 0.3 us on bare-metal
// Linux but 4-5 us on nested virtual machines, as much as a whole 1-row
// evaluation of a small tree model. So a model whose batches are cheap is
// measured on a random share of them, and each measured batch stands for
// 1/share batches: the estimate stays unbiased (the share depends only on
// earlier batches) while the clock reads cost under about 2% of the
// model's own CPU. Batches of exactAbove or more are all measured.
const (
	exactAbove = 200 * time.Microsecond
	// minShare bounds how rarely a batch is measured, so that even the
	// cheapest model is sampled often enough for a steady estimate.
	minShare = 1.0 / 64
	// meanWeight is the weight of a new measurement in the running mean.
	meanWeight = 0.1
)

// model meters a runtime.Model.
type model struct {
	runtime.Model
	cpu         prometheus.Counter
	predictions prometheus.Counter
	batched     bool
	clock       func() (time.Duration, bool) // threadCPU; replaced in tests
	random      func() float64               // in [0, 1)
	// mean is the running mean of measured batches' CPU in seconds, as
	// float64 bits; 0 until the first measurement. Concurrent updates may
	// lose one another, which only delays the mean a little.
	mean atomic.Uint64
}

// share is the probability that the next batch is measured.
func (m *model) share() float64 {
	mean := math.Float64frombits(m.mean.Load())
	if mean == 0 {
		return 1
	}
	return min(1, max(minShare, mean/exactAbove.Seconds()))
}

// Predict evaluates inputs and, for the batches it measures, charges the
// evaluating thread's CPU time to the model, failed evaluations included:
// their CPU was spent all the same. The goroutine is pinned to its thread
// for the call so that the two readings are of the same thread and count
// only this evaluation (a goroutine descheduled meanwhile leaves its
// thread idle).
func (m *model) Predict(ctx context.Context, inputs []runtime.Tensor) (out []runtime.Tensor, err error) {
	if share := m.share(); share >= 1 || m.random() < share {
		goruntime.LockOSThread()
		start, ok := m.clock()
		defer func() {
			if ok {
				if end, ok := m.clock(); ok && end >= start {
					m.charge((end - start).Seconds(), share)
				}
			}
			goruntime.UnlockOSThread()
		}()
	}
	out, err = m.Model.Predict(ctx, inputs)
	if err == nil {
		m.predictions.Add(float64(rows(inputs, m.batched)))
	}
	return out, err
}

// charge adds one measured batch, scaled up for the batches it stands for.
func (m *model) charge(seconds, share float64) {
	m.cpu.Add(seconds / share)
	mean := math.Float64frombits(m.mean.Load())
	if mean == 0 {
		mean = seconds
	} else {
		mean += meanWeight * (seconds - mean)
	}
	m.mean.Store(math.Float64bits(mean))
}

// rows is the batch size of inputs: the first dimension for batched
// models, else one.
func rows(inputs []runtime.Tensor, batched bool) int64 {
	if batched && len(inputs) > 0 && len(inputs[0].Shape) > 0 && inputs[0].Shape[0] > 0 {
		return inputs[0].Shape[0]
	}
	return 1
}

// RegisterResident exports maestro_inference_model_memory_bytes, read from
// the repository's own size accounting at scrape time, so a version counts
// exactly while the cache holds it.
func RegisterResident(reg prometheus.Registerer, repo *repository.Repository) {
	reg.MustRegister(&residentCollector{repo: repo, desc: prometheus.NewDesc(
		prometheus.BuildFQName(telemetry.Namespace, "inference", "model_memory_bytes"),
		"Memory held by a loaded model version (the runtime's estimate the cache budget counts).",
		[]string{"model", "version"}, nil)})
}

type residentCollector struct {
	repo *repository.Repository
	desc *prometheus.Desc
}

func (c *residentCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *residentCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.repo.Resident() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(r.Bytes), r.Model, r.Version)
	}
}
