package server_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/runtime"
)

func TestGRPCMetadataAndHealth(t *testing.T) {
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: repo(t), Name: "node-1"})
	c := srv.Client(t)
	ctx := ctxT(t)

	live, err := c.ServerLive(ctx, &pb.ServerLiveRequest{})
	if err != nil || !live.GetLive() {
		t.Fatalf("ServerLive = %v, %v", live, err)
	}
	ready, err := c.ServerReady(ctx, &pb.ServerReadyRequest{})
	if err != nil || !ready.GetReady() {
		t.Fatalf("ServerReady = %v, %v", ready, err)
	}
	md, err := c.ServerMetadata(ctx, &pb.ServerMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if md.GetName() != "node-1" || !slices.Contains(md.GetExtensions(), "model_repository") {
		t.Errorf("ServerMetadata = %v", md)
	}

	mm, err := c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.ModelMetadataResponse{
		Name: "m", Versions: []string{"1", "2"}, Platform: "maestro_inferencetest",
		Inputs:  []*pb.ModelMetadataResponse_TensorMetadata{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 3}}},
		Outputs: []*pb.ModelMetadataResponse_TensorMetadata{{Name: "y", Datatype: "FP32", Shape: []int64{-1, 1}}},
	}
	if !proto.Equal(mm, want) {
		t.Errorf("ModelMetadata = %v\nwant %v", mm, want)
	}

	mr, err := c.ModelReady(ctx, &pb.ModelReadyRequest{Name: "m", Version: "1"})
	if err != nil || !mr.GetReady() {
		t.Errorf("ModelReady(m, 1) = %v, %v", mr, err)
	}

	// A model that fails to load says why, and the others keep serving.
	var hdr metadata.MD
	mr, err = c.ModelReady(ctx, &pb.ModelReadyRequest{Name: "bad"}, grpc.Header(&hdr))
	if err != nil || mr.GetReady() {
		t.Errorf("ModelReady(bad) = %v, %v; want not ready", mr, err)
	}
	if r := hdr.Get("x-maestro-reason"); len(r) != 1 || !strings.Contains(r[0], "says fail") {
		t.Errorf("reason header = %v", r)
	}
	hdr = nil
	mr, err = c.ModelReady(ctx, &pb.ModelReadyRequest{Name: "broken"}, grpc.Header(&hdr))
	if err != nil || mr.GetReady() {
		t.Errorf("ModelReady(broken) = %v, %v; want not ready", mr, err)
	}
	if r := hdr.Get("x-maestro-reason"); len(r) != 1 || !strings.Contains(r[0], `config.yaml:3: inputs[0].datatype: unknown datatype "FP33"; `) ||
		!strings.Contains(r[0], "inputs[0].shape[0]: dimension 0") {
		t.Errorf("reason header for a config with two errors = %v", r)
	}
	_, err = c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "bad"})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "says fail") {
		t.Errorf("ModelMetadata(bad) = %v, want UNAVAILABLE with the reason", err)
	}
	if _, err := c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("ModelMetadata(nope) = %v, want NOT_FOUND", err)
	}

	h := healthpb.NewHealthClient(srv.Conn(t))
	for svc, want := range map[string]healthpb.HealthCheckResponse_ServingStatus{
		"":                               healthpb.HealthCheckResponse_SERVING,
		"inference.GRPCInferenceService": healthpb.HealthCheckResponse_SERVING,
		"m":                              healthpb.HealthCheckResponse_SERVING,
		"bad":                            healthpb.HealthCheckResponse_NOT_SERVING,
	} {
		res, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || res.GetStatus() != want {
			t.Errorf("health %q = %v, %v; want %v", svc, res.GetStatus(), err, want)
		}
	}
	if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("health of an unknown model = %v, want NOT_FOUND", err)
	}

	stream, err := reflectpb.NewServerReflectionClient(srv.Conn(t)).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range res.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"inference.GRPCInferenceService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
}

func TestGRPCInfer(t *testing.T) {
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: repo(t)})
	c := srv.Client(t)

	tests := map[string]struct {
		req  *pb.ModelInferRequest
		want []float32
		ver  string
	}{
		"latest version, typed": {
			req:  &pb.ModelInferRequest{ModelName: "m", Id: "req-1", Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input("x", []int64{2, 3}, 1, 2, 3, 4, 5, 6)}},
			want: []float32{26, 35}, ver: "2",
		},
		"pinned version": {
			req:  &pb.ModelInferRequest{ModelName: "m", ModelVersion: "1", Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input("x", []int64{1, 3}, 1, 1, 1)}},
			want: []float32{13}, ver: "1",
		},
		"requested output": {
			req: &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input("x", []int64{1, 3}, 0, 0, 1)},
				Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "y"}}},
			want: []float32{21}, ver: "2",
		},
		"no batch dimension": {
			req:  &pb.ModelInferRequest{ModelName: "flat", Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input("x", []int64{2}, 1.5, 2)}},
			want: []float32{3.5}, ver: "1",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := ctxT(t)
			resp, err := c.ModelInfer(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetModelVersion() != tc.ver || resp.GetId() != tc.req.GetId() || resp.GetModelName() != tc.req.GetModelName() {
				t.Errorf("response header fields: %v", resp)
			}
			if got := resp.GetOutputs()[0].GetContents().GetFp32Contents(); !slices.Equal(got, tc.want) {
				t.Errorf("y = %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("raw in, raw out", func(t *testing.T) {
		ctx := ctxT(t)
		raw := make([]byte, 0, 12)
		for _, v := range []float32{1, 2, 3} {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
		}
		resp, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "m",
			Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 3}}},
			RawInputContents: [][]byte{raw}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetRawOutputContents()) != 1 || resp.GetOutputs()[0].GetContents() != nil {
			t.Fatalf("want the output in raw form only, got %v", resp)
		}
		out := resp.GetRawOutputContents()[0]
		if got := math.Float32frombits(binary.LittleEndian.Uint32(out)); len(out) != 4 || got != 26 {
			t.Errorf("raw y = % x (%v), want 26", out, got)
		}
		if s := resp.GetOutputs()[0].GetShape(); !slices.Equal(s, []int64{1, 1}) {
			t.Errorf("shape %v", s)
		}
	})
}

func TestBadInputIsRejectedAndServerKeepsServing(t *testing.T) {
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: repo(t)})
	c := srv.Client(t)
	x := func(shape []int64, v ...float32) []*pb.ModelInferRequest_InferInputTensor {
		return []*pb.ModelInferRequest_InferInputTensor{fp32Input("x", shape, v...)}
	}
	nine := make([]float32, 27)
	tests := map[string]struct {
		req  *pb.ModelInferRequest
		code codes.Code
		msg  string
	}{
		"unknown model":         {&pb.ModelInferRequest{ModelName: "nope", Inputs: x([]int64{1, 3}, 1, 2, 3)}, codes.NotFound, `model "nope" not found`},
		"unknown version":       {&pb.ModelInferRequest{ModelName: "m", ModelVersion: "7", Inputs: x([]int64{1, 3}, 1, 2, 3)}, codes.NotFound, `version "7" not found (versions: 1, 2)`},
		"wrong input name":      {&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input("z", []int64{1, 3}, 1, 2, 3)}}, codes.InvalidArgument, `input "z" is not an input of model "m" (inputs: x)`},
		"missing input":         {&pb.ModelInferRequest{ModelName: "m"}, codes.InvalidArgument, `model "m": missing input(s) x`},
		"duplicate input":       {&pb.ModelInferRequest{ModelName: "m", Inputs: append(x([]int64{1, 3}, 1, 2, 3), fp32Input("x", []int64{1, 3}, 1, 2, 3))}, codes.InvalidArgument, `input "x" is given twice`},
		"wrong datatype":        {&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "INT64", Shape: []int64{1, 3}, Contents: &pb.InferTensorContents{Int64Contents: []int64{1, 2, 3}}}}}, codes.InvalidArgument, `input "x": datatype INT64, model "m" wants FP32`},
		"contents do not fit":   {&pb.ModelInferRequest{ModelName: "m", Inputs: x([]int64{2, 3}, 1, 2, 3)}, codes.InvalidArgument, `input "x": shape [2 3] needs 6 elements, contents hold 3`},
		"wrong shape":           {&pb.ModelInferRequest{ModelName: "m", Inputs: x([]int64{1, 4}, 1, 2, 3, 4)}, codes.InvalidArgument, `input "x": shape [1 4], model "m" wants [-1 3]`},
		"wrong rank":            {&pb.ModelInferRequest{ModelName: "m", Inputs: x([]int64{3}, 1, 2, 3)}, codes.InvalidArgument, `input "x": shape [3], model "m" wants [-1 3]`},
		"over max batch size":   {&pb.ModelInferRequest{ModelName: "m", Inputs: x([]int64{9, 3}, nine...)}, codes.InvalidArgument, `input "x": batch of 9 rows is over model "m"'s max_batch_size of 8`},
		"NaN not allowed":       {&pb.ModelInferRequest{ModelName: "m", Inputs: x([]int64{1, 3}, 1, float32(math.NaN()), 3)}, codes.InvalidArgument, `input "x" row 0: NaN is not allowed`},
		"unknown output":        {&pb.ModelInferRequest{ModelName: "m", Inputs: x([]int64{1, 3}, 1, 2, 3), Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "proba"}}}, codes.InvalidArgument, `requested output "proba" is not an output of model "m" (outputs: y)`},
		"output named twice":    {&pb.ModelInferRequest{ModelName: "m", Inputs: x([]int64{1, 3}, 1, 2, 3), Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "y"}, {Name: "y"}}}, codes.InvalidArgument, `requested output "y" is named twice`},
		"model failed to load":  {&pb.ModelInferRequest{ModelName: "bad", Inputs: x([]int64{1, 4}, 1, 2, 3, 4)}, codes.Unavailable, `says fail`},
		"oversized raw content": {&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 3}}}, RawInputContents: [][]byte{make([]byte, 16)}}, codes.InvalidArgument, `input "x": shape [1 3] needs 12 bytes of FP32, raw contents hold 16`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := ctxT(t)
			_, err := c.ModelInfer(ctx, tc.req)
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Errorf("got %v\nwant %v containing %q", err, tc.code, tc.msg)
			}
			if _, err := c.ServerLive(ctx, &pb.ServerLiveRequest{}); err != nil {
				t.Fatalf("server stopped answering: %v", err)
			}
		})
	}

	t.Run("message over the size limit", func(t *testing.T) {
		ctx := ctxT(t)
		big := make([]float32, 8*3)
		in := fp32Input("x", []int64{8, 3}, big...)
		// Pad with an unused string so the message exceeds 64 MiB.
		in.Parameters = map[string]*pb.InferParameter{"pad": {ParameterChoice: &pb.InferParameter_StringParam{StringParam: strings.Repeat("p", 65<<20)}}}
		_, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{in}},
			grpc.MaxCallSendMsgSize(100<<20))
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("got %v, want RESOURCE_EXHAUSTED", err)
		}
		if _, err := c.ServerLive(ctx, &pb.ServerLiveRequest{}); err != nil {
			t.Fatalf("server stopped answering: %v", err)
		}
	})
}

func TestRepositoryExtension(t *testing.T) {
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: repo(t), ModelControl: true})
	c := srv.Client(t)
	adminConn, err := grpc.NewClient(srv.AdminAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adminConn.Close() })
	admin := pb.NewGRPCInferenceServiceClient(adminConn)
	ctx := ctxT(t)
	infer := func() error {
		_, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input("x", []int64{1, 3}, 1, 2, 3)}})
		return err
	}
	if err := infer(); err != nil {
		t.Fatal(err)
	}
	_, _ = c.ModelReady(ctx, &pb.ModelReadyRequest{Name: "bad"})
	idx, err := c.RepositoryIndex(ctx, &pb.RepositoryIndexRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range idx.GetModels() {
		got[m.GetName()+"/"+m.GetVersion()] = m.GetState()
		if m.GetName() == "bad" && !strings.Contains(m.GetReason(), "says fail") {
			t.Errorf("bad model's reason = %q", m.GetReason())
		}
	}
	want := map[string]string{"m/1": "UNAVAILABLE", "m/2": "READY", "bad/1": "UNAVAILABLE", "flat/1": "UNAVAILABLE", "batched/1": "UNAVAILABLE", "broken/": "UNAVAILABLE"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("index %s = %q, want %q (index %v)", k, got[k], v, got)
		}
	}
	ready, err := c.RepositoryIndex(ctx, &pb.RepositoryIndexRequest{Ready: true})
	if err != nil || len(ready.GetModels()) != 1 || ready.GetModels()[0].GetName() != "m" {
		t.Errorf("ready index = %v, %v", ready, err)
	}

	if _, err := c.RepositoryModelUnload(ctx, &pb.RepositoryModelUnloadRequest{ModelName: "m"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("unload on the inference port = %v, want PERMISSION_DENIED", err)
	}
	if _, err := admin.RepositoryModelUnload(ctx, &pb.RepositoryModelUnloadRequest{ModelName: "m"}); err != nil {
		t.Fatal(err)
	}
	if err := infer(); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "unloaded") {
		t.Errorf("after unload: %v, want UNAVAILABLE", err)
	}
	idx, err = c.RepositoryIndex(ctx, &pb.RepositoryIndexRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range idx.GetModels() {
		if m.GetName() == "m" && (m.GetState() != "UNAVAILABLE" || m.GetReason() != "unloaded") {
			t.Errorf("index after unload: %v, want UNAVAILABLE with Triton's reason \"unloaded\"", m)
		}
	}
	if _, err := c.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: "m"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("load on the inference port = %v, want PERMISSION_DENIED", err)
	}
	if _, err := admin.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: "m"}); err != nil {
		t.Fatal(err)
	}
	if err := infer(); err != nil {
		t.Errorf("after load: %v", err)
	}
	if _, err := admin.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: "bad"}); status.Code(err) != codes.Unavailable {
		t.Errorf("load of a broken model = %v, want UNAVAILABLE", err)
	}
	if _, err := admin.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: "../etc"}); status.Code(err) != codes.NotFound {
		t.Errorf("load outside the repository = %v, want NOT_FOUND", err)
	}
}

// blockingModel echoes its 1-feature input; a row holding -1 reports on
// entered and waits for release, keeping the model busy. Other calls cost
// about 100 us, enough for the batcher to find merging worth it.
type blockingModel struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blockingModel) Predict(_ context.Context, in []runtime.Tensor) ([]runtime.Tensor, error) {
	x := in[0].Data.([]float32)
	if slices.Contains(x, -1) {
		b.entered <- struct{}{}
		<-b.release
	} else {
		time.Sleep(100 * time.Microsecond) // the evaluation's cost
	}
	return []runtime.Tensor{{Name: "y", Datatype: runtime.FP32, Shape: []int64{int64(len(x)), 1}, Data: slices.Clone(x)}}, nil
}

func (b *blockingModel) MemoryBytes() int64 { return 1 }

func TestDynamicBatchingMergesConcurrentGRPCRequests(t *testing.T) {
	blocker := &blockingModel{entered: make(chan struct{}, 1), release: make(chan struct{})}
	reg := inferencetest.Registry()
	reg[inferencetest.RuntimeName] = func(ctx context.Context, spec runtime.Spec) (runtime.Model, error) {
		if spec.Name == "batched" {
			return blocker, nil
		}
		return inferencetest.LoadTestModel(ctx, spec)
	}
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: repo(t), Registry: reg})
	c := srv.Client(t)
	ctx := ctxT(t)
	call := func(v float32) error {
		resp, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "batched",
			Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input("x", []int64{1, 1}, v)}})
		if err != nil {
			return err
		}
		if got := resp.GetOutputs()[0].GetContents().GetFp32Contents(); len(got) != 1 || got[0] != v {
			return fmt.Errorf("request %v got %v", v, got)
		}
		return nil
	}
	// A first lone request lets the batcher measure the model's cost.
	if err := call(10); err != nil {
		t.Fatal(err)
	}
	// Keep the model busy, as under load; the batcher then holds new
	// requests for company. Its delay is an hour: only merging the four
	// into the preferred batch size of 4 can answer them.
	busy := make(chan error, 1)
	go func() { busy <- call(-1) }()
	select {
	case <-blocker.entered:
	case <-ctx.Done():
		t.Fatal("the first request never reached the model")
	}
	g, _ := errgroup.WithContext(ctx)
	for i := range 4 {
		g.Go(func() error { return call(float32(i)) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	close(blocker.release)
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	body := scrape(t, srv)
	for _, want := range []string{
		`maestro_inference_batch_rows_count{model="batched",version="1"} 3`,
		`maestro_inference_batch_rows_sum{model="batched",version="1"} 6`,
		`maestro_inference_queue_duration_seconds_count{model="batched",version="1"} 6`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
