package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime"
)

// statusError maps an error to a gRPC status: the protocol's codes for
// unknown models, bad input and unavailable models; HTTP derives its status
// from the same code.
func statusError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, repository.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, runtime.ErrInvalidInput):
		code = codes.InvalidArgument
	case errors.Is(err, repository.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, errOverBudget), errors.Is(err, errTooLarge):
		code = codes.ResourceExhausted
	case errors.Is(err, errBodyTimeout):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, runtime.ErrInvalidInput)...)
}

// validate checks inputs against the model's signature: every declared
// input exactly once, nothing else, the declared datatypes, shapes that fit
// the declared dimensions, one batch size, and at most max_batch_size rows.
// It returns the batch size (1 for models without batching).
func validate(l *repository.Loaded, inputs []runtime.Tensor) (int64, error) {
	sig := l.Signature.Inputs
	if len(inputs) != len(sig) {
		for _, in := range inputs {
			if specIndex(sig, in.Name) < 0 {
				return 0, invalidf("input %q is not an input of model %q (inputs: %s)", in.Name, l.Name, specNames(sig))
			}
		}
	}
	var seen uint64 // inputs seen, by signature index (models have few inputs)
	batch := int64(-1)
	for _, in := range inputs {
		i := specIndex(sig, in.Name)
		if i < 0 {
			return 0, invalidf("input %q is not an input of model %q (inputs: %s)", in.Name, l.Name, specNames(sig))
		}
		if i < 64 {
			if seen&(1<<i) != 0 {
				return 0, invalidf("input %q is given twice", in.Name)
			}
			seen |= 1 << i
		}
		if err := checkInput(l, in.Name, in.Datatype, in.Shape); err != nil {
			return 0, err
		}
		if l.Config.MaxBatchSize > 0 {
			rows := in.Shape[0]
			if batch >= 0 && rows != batch {
				return 0, invalidf("input %q: batch of %d rows, other inputs have %d", in.Name, rows, batch)
			}
			batch = rows
		}
	}
	if len(inputs) != len(sig) {
		var missing []string
		for _, s := range sig {
			if !hasInput(inputs, s.Name) {
				missing = append(missing, s.Name)
			}
		}
		return 0, invalidf("model %q: missing input(s) %s", l.Name, strings.Join(missing, ", "))
	}
	if batch < 0 {
		batch = 1
	}
	return batch, nil
}

// checkInput checks one input's header against the model's signature: a
// declared input, its datatype, a shape that fits the declared dimensions
// and at most max_batch_size rows. The REST decoder calls it before it
// reads the input's data.
func checkInput(l *repository.Loaded, name string, dt runtime.Datatype, shape []int64) error {
	sig := l.Signature.Inputs
	i := specIndex(sig, name)
	if i < 0 {
		return invalidf("input %q is not an input of model %q (inputs: %s)", name, l.Name, specNames(sig))
	}
	spec := sig[i]
	if dt != spec.Datatype {
		return invalidf("input %q: datatype %s, model %q wants %s", name, dt, l.Name, spec.Datatype)
	}
	if len(shape) != len(spec.Shape) {
		return invalidf("input %q: shape %v, model %q wants %v", name, shape, l.Name, spec.Shape)
	}
	for d, want := range spec.Shape {
		if want != -1 && shape[d] != want {
			return invalidf("input %q: shape %v, model %q wants %v", name, shape, l.Name, spec.Shape)
		}
	}
	if l.Config.MaxBatchSize > 0 {
		rows := shape[0]
		if rows > l.Config.MaxBatchSize {
			return invalidf("input %q: batch of %d rows is over model %q's max_batch_size of %d", name, rows, l.Name, l.Config.MaxBatchSize)
		}
		if rows == 0 {
			return invalidf("input %q: batch of 0 rows", name)
		}
	}
	return nil
}

func specIndex(specs []runtime.TensorSpec, name string) int {
	for i, s := range specs {
		if s.Name == name {
			return i
		}
	}
	return -1
}

func specNames(specs []runtime.TensorSpec) string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

func hasInput(ts []runtime.Tensor, name string) bool {
	for _, t := range ts {
		if t.Name == name {
			return true
		}
	}
	return false
}

// checkRequested rejects requested outputs the model does not declare, and
// one named twice, as Triton rejects an input given twice.
func checkRequested(l *repository.Loaded, names []string) error {
	for i, n := range names {
		if specIndex(l.Signature.Outputs, n) < 0 {
			return invalidf("requested output %q is not an output of model %q (outputs: %s)", n, l.Name, specNames(l.Signature.Outputs))
		}
		if slices.Contains(names[:i], n) {
			return invalidf("requested output %q is named twice", n)
		}
	}
	return nil
}

// predict runs the model and returns the requested outputs (all when names
// is empty) in the requested order. A runtime panic becomes an Internal
// error: one bad model must not take the server down.
func (s *Server) predict(ctx context.Context, l *repository.Loaded, inputs []runtime.Tensor, rows int64, names []string) (out []runtime.Tensor, err error) {
	if !l.Batched() {
		s.metrics.Batch(l.Name, l.Version, rows)
	}
	// A span under a parent that records nothing (tracing off, or the
	// request not sampled) would be dropped anyway: skip building it.
	if s.tracer != nil && trace.SpanFromContext(ctx).IsRecording() {
		var span trace.Span
		ctx, span = s.tracer.Start(ctx, "inference.predict", trace.WithAttributes(
			attribute.String("inference.model", l.Name), attribute.String("inference.version", l.Version),
			attribute.Int64("inference.rows", rows), attribute.Bool("inference.dynamic_batching", l.Batched())))
		defer func() {
			if err != nil {
				span.SetStatus(otelcodes.Error, err.Error())
			}
			span.End()
		}()
	}
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, status.Errorf(codes.Internal, "model %q v%s panicked: %v", l.Name, l.Version, p)
		}
	}()
	outputs, err := l.Predict(ctx, inputs)
	if err != nil {
		return nil, fmt.Errorf("model %q v%s: %w", l.Name, l.Version, err)
	}
	if len(names) == 0 {
		return outputs, nil
	}
	out = make([]runtime.Tensor, 0, len(names))
	for _, n := range names {
		found := false
		for _, o := range outputs {
			if o.Name == n {
				out = append(out, o)
				found = true
				break
			}
		}
		if !found {
			return nil, status.Errorf(codes.Internal, "model %q v%s did not return output %q", l.Name, l.Version, n)
		}
	}
	return out, nil
}
