package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/server"
	"github.com/maestro-ml/maestro/inference/tensor"
)

func scrape(t *testing.T, srv *inferencetest.Server) string {
	t.Helper()
	code, body, _ := do(t, "GET", "http://"+srv.HTTPAddr+"/metrics", nil)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	return string(body)
}

func TestHTTPAPI(t *testing.T) {
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: repo(t), Name: "node-h", ModelControl: true})
	base := "http://" + srv.HTTPAddr

	for _, path := range []string{"/v2/health/live", "/v2/health/ready", "/v2/models/m/ready", "/v2/models/m/versions/1/ready"} {
		if code, body, _ := do(t, "GET", base+path, nil); code != http.StatusOK {
			t.Errorf("GET %s = %d %s", path, code, body)
		}
	}
	code, body, hdr := do(t, "GET", base+"/v2", nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"name":"node-h"`) || hdr.Get(server.ServerHeader) != "node-h" {
		t.Errorf("GET /v2 = %d %s", code, body)
	}
	code, body, _ = do(t, "GET", base+"/v2/models/m/versions/1", nil)
	var meta struct {
		Name     string
		Versions []string
		Inputs   []struct {
			Name, Datatype string
			Shape          []int64
		}
	}
	if err := json.Unmarshal(body, &meta); err != nil || code != http.StatusOK {
		t.Fatalf("metadata = %d %s (%v)", code, body, err)
	}
	if meta.Name != "m" || !slices.Equal(meta.Versions, []string{"1", "2"}) || !slices.Equal(meta.Inputs[0].Shape, []int64{-1, 3}) {
		t.Errorf("metadata = %+v", meta)
	}

	req := `{"id": "r1", "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6]]}]}`
	code, body, _ = do(t, "POST", base+"/v2/models/m/infer", req)
	if code != http.StatusOK {
		t.Fatalf("infer = %d %s", code, body)
	}
	var resp tensor.JSONResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.ID != "r1" || resp.ModelVersion != "2" || resp.Parameters[server.ServerParameter] != "node-h" {
		t.Errorf("response = %s", body)
	}
	got, err := tensor.DecodeJSON(tensor.JSONInput{Name: "y", Shape: resp.Outputs[0].Shape, Datatype: resp.Outputs[0].Datatype, Data: resp.Outputs[0].Data})
	if err != nil {
		t.Fatal(err)
	}
	if y := got.Data.([]float32); !slices.Equal(y, []float32{26, 35}) || !slices.Equal(got.Shape, []int64{2, 1}) {
		t.Errorf("y = %v %v", got.Shape, y)
	}
	code, body, _ = do(t, "POST", base+"/v2/models/m/versions/1/infer", `{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [0, 0, 0]}], "outputs": [{"name": "y"}]}`)
	if code != http.StatusOK || !strings.Contains(string(body), `"data":[10]`) {
		t.Errorf("pinned version = %d %s", code, body)
	}

	code, body, _ = do(t, "POST", base+"/v2/repository/index", "")
	if code != http.StatusOK || !strings.Contains(string(body), `{"name":"m","version":"2","state":"READY"}`) {
		t.Errorf("index = %d %s", code, body)
	}
	if code, body, _ := do(t, "POST", base+"/v2/repository/models/m/unload", ""); code != http.StatusForbidden {
		t.Errorf("unload on the inference port = %d %s, want 403", code, body)
	}
	admin := "http://" + srv.AdminAddr
	if code, body, _ := do(t, "POST", admin+"/v2/repository/models/m/unload", ""); code != http.StatusOK {
		t.Errorf("unload = %d %s", code, body)
	}
	if code, _, _ := do(t, "GET", base+"/v2/models/m/ready", nil); code != http.StatusBadRequest {
		t.Errorf("ready after unload = %d, want 400", code)
	}
	if code, body, _ := do(t, "POST", admin+"/v2/repository/models/m/load", ""); code != http.StatusOK {
		t.Errorf("load = %d %s", code, body)
	}

	metrics := scrape(t, srv)
	for _, want := range []string{
		`maestro_inference_requests_total{model="m",protocol="http",version="2"} 1`,
		`maestro_inference_requests_total{model="m",protocol="http",version="1"} 1`,
		`maestro_inference_request_duration_seconds_count{model="m",protocol="http",version="2"} 1`,
		`maestro_inference_cache_misses_total{model="m",version="2"}`,
		`maestro_inference_model_load_duration_seconds_count{model="m",version="2"}`,
		`maestro_inference_loaded_models `,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestHTTPErrors(t *testing.T) {
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: repo(t)})
	base := "http://" + srv.HTTPAddr
	tests := map[string]struct {
		path, body string
		code       int
		msg        string
	}{
		"unknown model":    {"/v2/models/nope/infer", `{"inputs": []}`, 404, `model \"nope\" not found`},
		"unknown version":  {"/v2/models/m/versions/9/infer", `{"inputs": []}`, 404, `version \"9\" not found`},
		"not JSON":         {"/v2/models/m/infer", `{"inputs": [`, 400, `request body is not a valid inference request`},
		"wrong input name": {"/v2/models/m/infer", `{"inputs": [{"name": "z", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}`, 400, `input \"z\" is not an input of model \"m\"`},
		"wrong datatype":   {"/v2/models/m/infer", `{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT32", "data": [1, 2, 3]}]}`, 400, `input \"x\": datatype INT32, model \"m\" wants FP32`},
		"shape vs data":    {"/v2/models/m/infer", `{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3]}]}`, 400, `input \"x\": shape [2 3] needs 6 elements, data holds 3`},
		"bad element":      {"/v2/models/m/infer", `{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, "two", 3]}]}`, 400, `input \"x\": element 1`},
		"NaN (null)":       {"/v2/models/m/infer", `{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, null, 3]}]}`, 400, `NaN is not allowed`},
		"over max batch":   {"/v2/models/m/infer", `{"inputs": [{"name": "x", "shape": [9, 1], "datatype": "FP32", "data": [1,2,3,4,5,6,7,8,9]}]}`, 400, `shape [9 1], model \"m\" wants [-1 3]`},
		"broken model":     {"/v2/models/bad/infer", `{"inputs": []}`, 503, `says fail`},
		"too large":        {"/v2/models/m/infer", `{"inputs": [], "id": "` + strings.Repeat("a", 2<<20) + `"}`, 413, `is over the limit of 1048576`},
		"ragged rows":      {"/v2/models/m/infer", `{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5], [6]]}]}`, 400, `input \"x\": data: ragged rows`},
		"output twice":     {"/v2/models/m/infer", `{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}], "outputs": [{"name": "y"}, {"name": "y"}]}`, 400, `requested output \"y\" is named twice`},
	}
	// A second server with a small request limit, for the size case.
	small := startWith(t, server.Config{MaxRequestBytes: 1 << 20})
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b := base
			if name == "too large" {
				b = "http://" + small
			}
			code, body, _ := do(t, "POST", b+tc.path, tc.body)
			if code != tc.code || !strings.Contains(string(body), tc.msg) || !strings.HasPrefix(string(body), `{"error":`) {
				t.Errorf("got %d %s\nwant %d {\"error\": ...%s...}", code, body, tc.code, tc.msg)
			}
		})
	}
	if code, _, _ := do(t, "GET", base+"/v2/health/live", nil); code != http.StatusOK {
		t.Fatal("server stopped answering after bad requests")
	}
	metrics := scrape(t, srv)
	for _, want := range []string{
		`maestro_inference_request_failures_total{code="NotFound",model="_unknown",protocol="http",version=""} 2`,
		`maestro_inference_request_failures_total{code="InvalidArgument",model="m",protocol="http",version="2"} 9`,
		`maestro_inference_request_failures_total{code="Unavailable",model="bad",protocol="http",version=""} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// startWith runs a server on repo(t) with cfg (for limits) and returns its
// HTTP address.
func startWith(t *testing.T, cfg server.Config) string {
	t.Helper()
	cfg.Models = repository.Options{Dir: repo(t), Registry: inferencetest.Registry()}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, nil, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return lis.Addr().String()
}

// gateModel blocks every Predict until release is closed, and reports each
// call on entered.
type gateModel struct {
	entered chan struct{}
	release chan struct{}
}

func (g *gateModel) Predict(ctx context.Context, in []runtime.Tensor) ([]runtime.Tensor, error) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return []runtime.Tensor{{Name: "y", Datatype: runtime.FP32, Shape: []int64{in[0].Shape[0], 1}, Data: make([]float32, in[0].Shape[0])}}, nil
}

func (g *gateModel) MemoryBytes() int64 { return 1 }

func TestShutdownDrainsInFlightRequests(t *testing.T) {
	dir := t.TempDir()
	inferencetest.WriteModel(t, dir, inferencetest.TestModel{Name: "slow", Features: 1})
	gate := &gateModel{entered: make(chan struct{}, 2), release: make(chan struct{})}
	reg := runtime.Registry{inferencetest.RuntimeName: func(context.Context, runtime.Spec) (runtime.Model, error) { return gate, nil }}
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: dir, Registry: reg})
	c := srv.Client(t)

	grpcDone := make(chan error, 1)
	go func() {
		_, err := c.ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: "slow",
			Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input("x", []int64{1, 1}, 1)}})
		grpcDone <- err
	}()
	httpDone := make(chan int, 1)
	go func() {
		res, err := http.Post("http://"+srv.HTTPAddr+"/v2/models/slow/infer", "application/json",
			strings.NewReader(`{"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}`))
		if err != nil {
			httpDone <- -1
			return
		}
		res.Body.Close()
		httpDone <- res.StatusCode
	}()
	for range 2 {
		select {
		case <-gate.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("requests did not reach the model")
		}
	}

	stopped := make(chan struct{})
	go func() {
		srv.Stop()
		close(stopped)
	}()
	// Draining waits for the model: Stop cannot have returned yet.
	select {
	case <-stopped:
		t.Fatal("Stop returned while requests were in flight")
	default:
	}
	close(gate.release)
	select {
	case err := <-grpcDone:
		if err != nil {
			t.Errorf("in-flight gRPC request failed during drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gRPC request never finished")
	}
	if code := <-httpDone; code != http.StatusOK {
		t.Errorf("in-flight HTTP request answered %d during drain", code)
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return after the drain")
	}
	var opErr *net.OpError
	if _, err := net.DialTimeout("tcp", srv.GRPCAddr, time.Second); err == nil || !errors.As(err, &opErr) {
		t.Errorf("gRPC port still open after stop: %v", err)
	}
}
