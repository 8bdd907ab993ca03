package repository

import (
	"reflect"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/inference/runtime"
)

const goodConfig = `name: fraud
runtime: xgboost
max_batch_size: 1024
inputs:
  - {name: features, datatype: FP32, shape: [30]}
outputs:
  - {name: probability, datatype: FP32, shape: [1]}
dynamic_batching:
  max_queue_delay_microseconds: 200
  preferred_batch_size: [16, 64]
parameters: {objective: binary}
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig("fraud/config.yaml", "fraud", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	want := runtime.Signature{
		Inputs:  []runtime.TensorSpec{{Name: "features", Datatype: runtime.FP32, Shape: []int64{-1, 30}}},
		Outputs: []runtime.TensorSpec{{Name: "probability", Datatype: runtime.FP32, Shape: []int64{-1, 1}}},
	}
	if got := c.Signature(); !reflect.DeepEqual(got, want) {
		t.Errorf("signature = %+v, want %+v", got, want)
	}
	if c.DynamicBatching.MaxQueueDelay().Microseconds() != 200 || !reflect.DeepEqual(c.DynamicBatching.PreferredBatchSize, []int64{16, 64}) {
		t.Errorf("dynamic batching = %+v", c.DynamicBatching)
	}
	if c.Parameters["objective"] != "binary" {
		t.Errorf("parameters = %v", c.Parameters)
	}

	noBatch, err := ParseConfig("m/config.yaml", "m", []byte("name: m\nruntime: linear\ninputs: [{name: x, datatype: FP64, shape: [2, 3]}]\noutputs: [{name: y, datatype: FP64, shape: [1]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := noBatch.Signature().Inputs[0].Shape; !reflect.DeepEqual(got, []int64{2, 3}) {
		t.Errorf("without max_batch_size the shape stays as written, got %v", got)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := map[string]struct {
		yaml string
		want []string // substrings, each must appear
	}{
		"unknown field": {
			"name: m\nruntime: linear\nmax_batch: 3\n",
			[]string{"f.yaml", "line 3", "max_batch"}},
		"wrong type": {
			"name: m\nruntime: linear\nmax_batch_size: lots\n",
			[]string{"f.yaml", "line 3"}},
		"name differs from directory": {
			"name: other\nruntime: linear\ninputs: [{name: x, datatype: FP32, shape: [1]}]\noutputs: [{name: y, datatype: FP32, shape: [1]}]\n",
			[]string{"f.yaml:1: name: \"other\" must equal the model's directory name \"m\""}},
		"every error is reported": {
			"name: m\nruntime: linear\nmax_batch_size: 4\ninputs:\n  - {name: x, datatype: FP33, shape: [0]}\n  - {name: x, datatype: FP32, shape: [2]}\noutputs: []\ndynamic_batching:\n  preferred_batch_size: [8]\n",
			[]string{
				"f.yaml:5: inputs[0].datatype: unknown datatype \"FP33\"",
				"f.yaml:5: inputs[0].shape[0]: dimension 0",
				"f.yaml:6: inputs[1].name: \"x\" repeats inputs[0]",
				"f.yaml:7: outputs: at least one output is required",
				"f.yaml:9: dynamic_batching.preferred_batch_size[0]: 8 is outside 1..max_batch_size (4)",
			}},
		"runtime missing": {
			"name: m\ninputs: [{name: x, datatype: FP32, shape: [1]}]\noutputs: [{name: y, datatype: FP32, shape: [1]}]\n",
			[]string{"f.yaml:1: runtime: required"}},
		"batching without batch size": {
			"name: m\nruntime: r\ninputs: [{name: x, datatype: FP32, shape: [1]}]\noutputs: [{name: y, datatype: FP32, shape: [1]}]\ndynamic_batching: {max_queue_delay_microseconds: -1}\n",
			[]string{"f.yaml:5: dynamic_batching: needs max_batch_size > 0", "f.yaml:5: dynamic_batching.max_queue_delay_microseconds: must not be negative"}},
		"empty": {"", []string{"f.yaml"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig("f.yaml", "m", []byte(tc.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("name: m\nruntime: r\ninputs: [{name: x, datatype: FP32, shape: [-1, 2]}]\noutputs: [{name: y, datatype: BYTES, shape: [1]}]\n"))
	f.Add([]byte("name: [\n"))
	f.Add([]byte("inputs:\n  - shape: [a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("f.yaml", "m", data)
		if err == nil {
			// What parses must describe a model the server can serve.
			if c.Name != "m" || c.Runtime == "" || len(c.Inputs) == 0 || len(c.Outputs) == 0 {
				t.Fatalf("accepted an incomplete config: %+v", c)
			}
			_ = c.Signature()
		}
	})
}
