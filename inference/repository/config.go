package repository

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/maestro-ml/maestro/inference/runtime"
)

// ConfigFile is the name of a model's configuration inside its directory.
const ConfigFile = "config.yaml"

// Config is a model's config.yaml: what the model is called, which runtime
// evaluates it and the tensors it takes and returns.
type Config struct {
	Name    string `yaml:"name"`
	Runtime string `yaml:"runtime"`
	// MaxBatchSize > 0 gives every input and output a leading variable
	// batch dimension that the shapes below leave out, as in Triton.
	MaxBatchSize    int64             `yaml:"max_batch_size"`
	Inputs          []TensorConfig    `yaml:"inputs"`
	Outputs         []TensorConfig    `yaml:"outputs"`
	DynamicBatching *DynamicBatching  `yaml:"dynamic_batching"`
	Parameters      map[string]string `yaml:"parameters"`
}

// TensorConfig declares one input or output.
type TensorConfig struct {
	Name     string           `yaml:"name"`
	Datatype runtime.Datatype `yaml:"datatype"`
	Shape    []int64          `yaml:"shape"`
}

// DynamicBatching asks the server to merge concurrent requests, as Triton's
// dynamic batcher does.
type DynamicBatching struct {
	MaxQueueDelayMicroseconds int64   `yaml:"max_queue_delay_microseconds"`
	PreferredBatchSize        []int64 `yaml:"preferred_batch_size"`
}

// MaxQueueDelay is how long the first request of a batch may wait for others.
func (d *DynamicBatching) MaxQueueDelay() time.Duration {
	return time.Duration(d.MaxQueueDelayMicroseconds) * time.Microsecond
}

// Signature is the runtime signature the config declares, with the leading
// -1 batch dimension added when MaxBatchSize > 0.
func (c *Config) Signature() runtime.Signature {
	conv := func(ts []TensorConfig) []runtime.TensorSpec {
		out := make([]runtime.TensorSpec, len(ts))
		for i, t := range ts {
			shape := make([]int64, 0, len(t.Shape)+1)
			if c.MaxBatchSize > 0 {
				shape = append(shape, -1)
			}
			shape = append(shape, t.Shape...)
			out[i] = runtime.TensorSpec{Name: t.Name, Datatype: t.Datatype, Shape: shape}
		}
		return out
	}
	return runtime.Signature{Inputs: conv(c.Inputs), Outputs: conv(c.Outputs)}
}

var datatypes = map[runtime.Datatype]bool{
	runtime.Bool: true, runtime.Uint8: true, runtime.Uint16: true, runtime.Uint32: true,
	runtime.Uint64: true, runtime.Int8: true, runtime.Int16: true, runtime.Int32: true,
	runtime.Int64: true, runtime.FP16: true, runtime.FP32: true, runtime.FP64: true,
	runtime.Bytes: true,
}

// ParseConfig parses and validates a config.yaml. file names it in errors,
// dir is the model's directory name, which the config's name must equal.
// Unknown fields are errors; every problem is reported, each as
// "file:line: field: message".
func ParseConfig(file, dir string, data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		// yaml.v3 already names the line; add the file.
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	v := validator{file: file, root: &root}
	v.check(&c, dir)
	if len(v.errs) > 0 {
		return nil, errors.Join(v.errs...)
	}
	return &c, nil
}

type validator struct {
	file string
	root *yaml.Node
	errs []error
}

// fail records an error at the line of the node at path (map keys and list
// indexes), or at the closest existing parent.
func (v *validator) fail(path []any, format string, args ...any) {
	field := ""
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if field != "" {
				field += "."
			}
			field += p
		case int:
			field += "[" + strconv.Itoa(p) + "]"
		}
	}
	if field == "" {
		field = "(document)"
	}
	v.errs = append(v.errs, fmt.Errorf("%s:%d: %s: %s", v.file, v.line(path), field, fmt.Sprintf(format, args...)))
}

func (v *validator) line(path []any) int {
	n := v.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch p := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == p {
						next = n.Content[i+1]
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && p < len(n.Content) {
				next = n.Content[p]
			}
		}
		if next == nil {
			break
		}
		n, line = next, next.Line
	}
	if line == 0 {
		line = 1
	}
	return line
}

func (v *validator) check(c *Config, dir string) {
	switch {
	case c.Name == "":
		v.fail([]any{"name"}, "required")
	case c.Name != dir:
		v.fail([]any{"name"}, "%q must equal the model's directory name %q", c.Name, dir)
	}
	if c.Runtime == "" {
		v.fail([]any{"runtime"}, "required")
	}
	if c.MaxBatchSize < 0 {
		v.fail([]any{"max_batch_size"}, "must be 0 (no batching) or positive, got %d", c.MaxBatchSize)
	}
	if len(c.Inputs) == 0 {
		v.fail([]any{"inputs"}, "at least one input is required")
	}
	if len(c.Outputs) == 0 {
		v.fail([]any{"outputs"}, "at least one output is required")
	}
	v.tensors("inputs", c.Inputs)
	v.tensors("outputs", c.Outputs)
	if d := c.DynamicBatching; d != nil {
		if c.MaxBatchSize <= 0 {
			v.fail([]any{"dynamic_batching"}, "needs max_batch_size > 0")
		}
		if d.MaxQueueDelayMicroseconds < 0 {
			v.fail([]any{"dynamic_batching", "max_queue_delay_microseconds"}, "must not be negative")
		}
		for i, s := range d.PreferredBatchSize {
			if s <= 0 || (c.MaxBatchSize > 0 && s > c.MaxBatchSize) {
				v.fail([]any{"dynamic_batching", "preferred_batch_size", i}, "%d is outside 1..max_batch_size (%d)", s, c.MaxBatchSize)
			}
		}
	}
}

func (v *validator) tensors(kind string, ts []TensorConfig) {
	seen := map[string]int{}
	for i, t := range ts {
		if t.Name == "" {
			v.fail([]any{kind, i, "name"}, "required")
		} else if j, dup := seen[t.Name]; dup {
			v.fail([]any{kind, i, "name"}, "%q repeats %s[%d]", t.Name, kind, j)
		} else {
			seen[t.Name] = i
		}
		if !datatypes[t.Datatype] {
			v.fail([]any{kind, i, "datatype"}, "unknown datatype %q", t.Datatype)
		}
		for j, d := range t.Shape {
			if d == 0 || d < -1 {
				v.fail([]any{kind, i, "shape", j}, "dimension %d: want a positive size or -1 (variable)", d)
			}
		}
	}
}

// yamlRoot parses data into v's node tree, so that v can name lines.
func yamlRoot(data []byte, v *validator) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return err
	}
	v.root = &root
	return nil
}
