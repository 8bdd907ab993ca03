package server_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/runtime/fixture"
	"github.com/maestro-ml/maestro/inference/tensor"
)

// TestDemoFixturesThroughBothAPIs replays every reference fixture (inputs
// with the training library's own predictions) through the real server:
// gRPC with typed contents, gRPC with raw contents, and REST/JSON.
func TestDemoFixturesThroughBothAPIs(t *testing.T) {
	root := inferencetest.ModuleRoot(t)
	paths, err := filepath.Glob(filepath.Join(root, "examples", "models", "fixtures", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures found: %v", err)
	}
	srv := inferencetest.Start(t, inferencetest.Options{})
	c := srv.Client(t)

	for _, p := range paths {
		fx, err := fixture.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(filepath.Base(p), func(t *testing.T) {
			ctx := ctxT(t)
			check := func(api string, got []runtime.Tensor) {
				t.Helper()
				if len(got) != len(fx.Outputs) {
					t.Fatalf("%s: %d outputs, want %d", api, len(got), len(fx.Outputs))
				}
				for i, want := range fx.Outputs {
					if err := fixture.Compare(want, got[i], fx.Tolerance); err != nil {
						t.Errorf("%s: %v", api, err)
					}
				}
			}
			var requested []*pb.ModelInferRequest_InferRequestedOutputTensor
			for _, o := range fx.Outputs {
				requested = append(requested, &pb.ModelInferRequest_InferRequestedOutputTensor{Name: o.Name})
			}

			// gRPC, typed contents.
			req := &pb.ModelInferRequest{ModelName: fx.ModelName, ModelVersion: fx.ModelVersion, Outputs: requested}
			for _, in := range fx.Inputs {
				out, err := tensor.EncodeContents(in)
				if err != nil {
					t.Fatal(err)
				}
				req.Inputs = append(req.Inputs, &pb.ModelInferRequest_InferInputTensor{Name: out.Name, Datatype: out.Datatype, Shape: out.Shape, Contents: out.Contents})
			}
			resp, err := c.ModelInfer(ctx, req)
			if err != nil {
				t.Fatalf("grpc typed: %v", err)
			}
			var got []runtime.Tensor
			for _, o := range resp.GetOutputs() {
				g, err := tensor.DecodeContents(&pb.ModelInferRequest_InferInputTensor{Name: o.Name, Datatype: o.Datatype, Shape: o.Shape, Contents: o.Contents})
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, g)
			}
			check("grpc typed", got)

			// gRPC, raw contents.
			req = &pb.ModelInferRequest{ModelName: fx.ModelName, ModelVersion: fx.ModelVersion, Outputs: requested}
			for _, in := range fx.Inputs {
				out, raw, err := tensor.EncodeRaw(in)
				if err != nil {
					t.Fatal(err)
				}
				req.Inputs = append(req.Inputs, &pb.ModelInferRequest_InferInputTensor{Name: out.Name, Datatype: out.Datatype, Shape: out.Shape})
				req.RawInputContents = append(req.RawInputContents, append([]byte(nil), raw...))
			}
			resp, err = c.ModelInfer(ctx, req)
			if err != nil {
				t.Fatalf("grpc raw: %v", err)
			}
			got = got[:0]
			for i, o := range resp.GetOutputs() {
				g, err := tensor.DecodeRaw(o.Name, runtime.Datatype(o.Datatype), o.Shape, resp.GetRawOutputContents()[i])
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, g)
			}
			check("grpc raw", got)

			// REST/JSON.
			body := tensor.JSONRequest{}
			for _, in := range fx.Inputs {
				out, err := tensor.EncodeJSONInput(in)
				if err != nil {
					t.Fatal(err)
				}
				body.Inputs = append(body.Inputs, out)
			}
			for _, o := range fx.Outputs {
				body.Outputs = append(body.Outputs, tensor.JSONRequestedOutput{Name: o.Name})
			}
			code, data, _ := do(t, "POST", "http://"+srv.HTTPAddr+"/v2/models/"+fx.ModelName+"/versions/"+fx.ModelVersion+"/infer", body)
			if code != http.StatusOK {
				t.Fatalf("rest: %d %s", code, data)
			}
			var jr tensor.JSONResponse
			if err := json.Unmarshal(data, &jr); err != nil {
				t.Fatal(err)
			}
			got = got[:0]
			for _, o := range jr.Outputs {
				g, err := tensor.DecodeJSON(tensor.JSONInput{Name: o.Name, Shape: o.Shape, Datatype: o.Datatype, Data: o.Data})
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, g)
			}
			check("rest", got)
		})
	}
}
