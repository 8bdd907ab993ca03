// Package oipclient is a small client of the Open Inference Protocol (KServe
// v2) over gRPC or REST, with the REST JSON types as its one request and
// response form, so callers (`maestro predict`, the demo traffic of
// `maestro up`) are written once for both protocols.
package oipclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/tensor"
)

// Client talks to one inference server (or a route to several).
type Client interface {
	// Metadata returns the inputs model (version "" for the server's
	// choice) declares.
	Metadata(ctx context.Context, model, version string) ([]runtime.TensorSpec, error)
	// Infer sends one inference request and returns the answer.
	Infer(ctx context.Context, model, version string, req tensor.JSONRequest) (*tensor.JSONResponse, error)
}

// NewGRPC returns a Client over conn; conn stays the caller's to close.
func NewGRPC(conn grpc.ClientConnInterface) Client {
	return &grpcClient{c: pb.NewGRPCInferenceServiceClient(conn)}
}

// NewHTTP returns a Client of the REST API at base (e.g.
// http://127.0.0.1:8080); hc nil means http.DefaultClient.
func NewHTTP(base string, hc *http.Client) Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &httpClient{base: base, hc: hc}
}

type grpcClient struct{ c pb.GRPCInferenceServiceClient }

func (g *grpcClient) Metadata(ctx context.Context, model, version string) ([]runtime.TensorSpec, error) {
	md, err := g.c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: model, Version: version})
	if err != nil {
		return nil, grpcErr(err)
	}
	var out []runtime.TensorSpec
	for _, in := range md.GetInputs() {
		out = append(out, runtime.TensorSpec{Name: in.GetName(), Datatype: runtime.Datatype(in.GetDatatype()), Shape: in.GetShape()})
	}
	if len(out) == 0 {
		return nil, errors.New("the model's metadata lists no inputs")
	}
	return out, nil
}

func (g *grpcClient) Infer(ctx context.Context, model, version string, jr tensor.JSONRequest) (*tensor.JSONResponse, error) {
	req, err := GRPCRequest(model, version, jr)
	if err != nil {
		return nil, err
	}
	resp, err := g.c.ModelInfer(ctx, req)
	if err != nil {
		return nil, grpcErr(err)
	}
	out := &tensor.JSONResponse{ModelName: resp.GetModelName(), ModelVersion: resp.GetModelVersion(), ID: resp.GetId(), Parameters: map[string]any{}}
	for k, p := range resp.GetParameters() {
		out.Parameters[k] = p.GetStringParam()
	}
	for _, o := range resp.GetOutputs() {
		t, err := tensor.DecodeContents(&pb.ModelInferRequest_InferInputTensor{Name: o.GetName(), Datatype: o.GetDatatype(), Shape: o.GetShape(), Contents: o.GetContents()})
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", o.GetName(), err)
		}
		jo, err := tensor.EncodeJSON(t)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", o.GetName(), err)
		}
		out.Outputs = append(out.Outputs, jo)
	}
	return out, nil
}

// GRPCRequest converts a REST request body into the gRPC request for model
// and version.
func GRPCRequest(model, version string, jr tensor.JSONRequest) (*pb.ModelInferRequest, error) {
	req := &pb.ModelInferRequest{ModelName: model, ModelVersion: version, Id: jr.ID}
	for _, in := range jr.Inputs {
		t, err := tensor.DecodeJSON(in)
		if err != nil {
			return nil, err
		}
		out, err := tensor.EncodeContents(t)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", in.Name, err)
		}
		req.Inputs = append(req.Inputs, &pb.ModelInferRequest_InferInputTensor{Name: out.Name, Datatype: out.Datatype, Shape: out.Shape, Contents: out.Contents})
	}
	for _, o := range jr.Outputs {
		req.Outputs = append(req.Outputs, &pb.ModelInferRequest_InferRequestedOutputTensor{Name: o.Name})
	}
	return req, nil
}

// grpcErr renders a gRPC status as code and message, as the REST client
// renders a status line and error body.
func grpcErr(err error) error {
	st := status.Convert(err)
	return fmt.Errorf("%s: %s", st.Code(), st.Message())
}

type httpClient struct {
	base string
	hc   *http.Client
}

func (h *httpClient) path(model, version string) string {
	p := h.base + "/v2/models/" + model
	if version != "" {
		p += "/versions/" + version
	}
	return p
}

func (h *httpClient) do(ctx context.Context, method, url string, body []byte, into any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := h.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("HTTP %d: %s", res.StatusCode, e.Error)
		}
		return fmt.Errorf("HTTP %d: %s", res.StatusCode, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

func (h *httpClient) Metadata(ctx context.Context, model, version string) ([]runtime.TensorSpec, error) {
	var md struct {
		Inputs []struct {
			Name     string  `json:"name"`
			Datatype string  `json:"datatype"`
			Shape    []int64 `json:"shape"`
		} `json:"inputs"`
	}
	if err := h.do(ctx, http.MethodGet, h.path(model, version), nil, &md); err != nil {
		return nil, err
	}
	var out []runtime.TensorSpec
	for _, in := range md.Inputs {
		out = append(out, runtime.TensorSpec{Name: in.Name, Datatype: runtime.Datatype(in.Datatype), Shape: in.Shape})
	}
	if len(out) == 0 {
		return nil, errors.New("the model's metadata lists no inputs")
	}
	return out, nil
}

func (h *httpClient) Infer(ctx context.Context, model, version string, req tensor.JSONRequest) (*tensor.JSONResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var resp tensor.JSONResponse
	if err := h.do(ctx, http.MethodPost, h.path(model, version)+"/infer", body, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
