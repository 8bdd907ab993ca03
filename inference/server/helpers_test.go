package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
)

// repo writes the repository most tests use:
//   - m: 3 features, versions 1 (bias 10) and 2 (bias 20), batches up to 8;
//   - flat: no batch dimension, 2 features;
//   - batched: dynamic batching, preferred batch size 4, a long delay;
//   - bad: its only version fails to load;
//   - broken: a config.yaml with two errors.
func repo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "m", Features: 3, Biases: []float64{10, 20}, MaxBatchSize: 8})
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "flat", Features: 2, MaxBatchSize: -1})
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "batched", Features: 1, MaxBatchSize: 64,
		QueueDelay: time.Hour, PreferredBatchSizes: []int64{4}})
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "bad"})
	if err := os.WriteFile(filepath.Join(dir, "bad", "1", "bias"), []byte("fail"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "broken", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken", "config.yaml"), []byte("name: broken\nruntime: inferencetest\ninputs: [{name: x, datatype: FP33, shape: [0]}]\noutputs: [{name: y, datatype: FP32, shape: [1]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func fp32Input(name string, shape []int64, v ...float32) *pb.ModelInferRequest_InferInputTensor {
	return &pb.ModelInferRequest_InferInputTensor{Name: name, Datatype: "FP32", Shape: shape, Contents: &pb.InferTensorContents{Fp32Contents: v}}
}

// do sends an HTTP request and returns the status and body.
func do(t *testing.T, method, url string, body any) (int, []byte, http.Header) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = bytes.NewBufferString(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctxT(t), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, data, res.Header
}
