// Package metering measures what each model version costs the inference
// server: the CPU time of its evaluations and the memory it holds loaded,
// exported as Prometheus series that `maestro cost` turns into money.
//
// CPU is measured per evaluated batch, as the thread CPU time of the
// goroutine that runs the model, pinned to its OS thread for the call. A
// batch belongs to one model version, so all of its requests' shares land
// in that version's counter. Work outside the model (decoding, gRPC, the
// batcher's queue) is the server's overhead, left in the process's own
// process_cpu_seconds_total.
package metering

import (
	"context"
	goruntime "runtime"

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

// model meters a runtime.Model.
type model struct {
	runtime.Model
	cpu         prometheus.Counter
	predictions prometheus.Counter
	batched     bool
}

// Predict evaluates inputs and charges the evaluating thread's CPU time to
// the model, failed evaluations included: their CPU was spent all the same.
// The goroutine is pinned to its thread for the call so that the two
// readings are of the same thread and count only this evaluation (a
// goroutine descheduled meanwhile leaves its thread idle).
func (m *model) Predict(ctx context.Context, inputs []runtime.Tensor) (out []runtime.Tensor, err error) {
	goruntime.LockOSThread()
	start, ok := threadCPU()
	defer func() {
		if ok {
			if end, ok := threadCPU(); ok && end > start {
				m.cpu.Add((end - start).Seconds())
			}
		}
		goruntime.UnlockOSThread()
	}()
	out, err = m.Model.Predict(ctx, inputs)
	if err == nil {
		m.predictions.Add(float64(rows(inputs, m.batched)))
	}
	return out, err
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
