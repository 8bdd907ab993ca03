package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/tensor"
)

// grpcService implements GRPCInferenceService over the repository.
type grpcService struct {
	pb.UnimplementedGRPCInferenceServiceServer
	s     *Server
	admin bool      // on the admin listener, where model control is served
	calls sync.Pool // *inferCall
}

func (g *grpcService) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

func (g *grpcService) ServerReady(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return &pb.ServerReadyResponse{Ready: g.s.ready()}, nil
}

func (g *grpcService) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	return &pb.ServerMetadataResponse{Name: g.s.cfg.Name, Version: g.s.cfg.Version, Extensions: extensions}, nil
}

// ModelReady loads the model if needed: readiness is a use, so that a probe
// tells whether the model really serves. A model that cannot load answers
// not ready, with the reason in the x-maestro-reason header.
func (g *grpcService) ModelReady(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	_, err := g.s.repo.Get(ctx, req.GetName(), req.GetVersion())
	switch {
	case err == nil:
		return &pb.ModelReadyResponse{Ready: true}, nil
	case errors.Is(err, repository.ErrNotFound):
		return nil, statusError(err)
	case errors.Is(err, repository.ErrUnavailable):
		_ = grpc.SetHeader(ctx, metadata.Pairs(reasonHeader, oneLine(err.Error())))
		return &pb.ModelReadyResponse{Ready: false}, nil
	default:
		return nil, statusError(err)
	}
}

// ModelMetadata answers from config.yaml without loading the model; a model
// that cannot serve answers UNAVAILABLE with the reason.
func (g *grpcService) ModelMetadata(_ context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	info, err := g.s.repo.Info(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, statusError(err)
	}
	if info.Err != nil {
		return nil, statusError(info.Err)
	}
	return &pb.ModelMetadataResponse{
		Name:     info.Name,
		Versions: info.Versions,
		Platform: platform(info.Config),
		Inputs:   tensorMetadata(info.Signature.Inputs),
		Outputs:  tensorMetadata(info.Signature.Outputs),
	}, nil
}

func platform(c *repository.Config) string { return "maestro_" + c.Runtime }

func tensorMetadata(specs []runtime.TensorSpec) []*pb.ModelMetadataResponse_TensorMetadata {
	out := make([]*pb.ModelMetadataResponse_TensorMetadata, len(specs))
	for i, s := range specs {
		out[i] = &pb.ModelMetadataResponse_TensorMetadata{Name: s.Name, Datatype: string(s.Datatype), Shape: s.Shape}
	}
	return out
}

func (g *grpcService) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	return g.modelInfer(ctx, req, &inferStorage{})
}

// modelInfer answers req in the storage a holds.
func (g *grpcService) modelInfer(ctx context.Context, req *pb.ModelInferRequest, a *inferStorage) (*pb.ModelInferResponse, error) {
	start := time.Now()
	resp, model, ver, err := g.infer(ctx, req, a)
	g.s.observe("grpc", model, ver, start, err)
	if err != nil {
		return nil, statusError(err)
	}
	return resp, nil
}

func (g *grpcService) infer(ctx context.Context, req *pb.ModelInferRequest, a *inferStorage) (*pb.ModelInferResponse, string, string, error) {
	l, err := g.s.repo.Get(ctx, req.GetModelName(), req.GetModelVersion())
	if err != nil {
		model, ver := failedLabels(err, req.GetModelName())
		return nil, model, ver, err
	}
	// The message is already received (bounded by MaxRequestBytes); what
	// the budget bounds is how many such messages are decoded and
	// evaluated at once.
	res := g.s.budget.reserve("grpc")
	defer res.release()
	if err := res.take(payloadBytes(req)); err != nil {
		return nil, l.Name, l.Version, err
	}
	inputs, err := tensor.DecodeInputsTo(a.inputs[:0], req)
	if err != nil {
		return nil, l.Name, l.Version, err
	}
	rows, err := validate(l, inputs)
	if err != nil {
		return nil, l.Name, l.Version, err
	}
	var names []string
	if len(req.GetOutputs()) > 0 {
		names = make([]string, len(req.GetOutputs()))
		for i, o := range req.GetOutputs() {
			names[i] = o.GetName()
		}
		if err := checkRequested(l, names); err != nil {
			return nil, l.Name, l.Version, err
		}
	}
	outputs, err := g.s.predict(ctx, l, inputs, rows, names)
	if err != nil {
		return nil, l.Name, l.Version, err
	}
	resp := &a.resp
	resp.Reset()
	resp.ModelName, resp.ModelVersion, resp.Id, resp.Parameters = l.Name, l.Version, req.GetId(), g.s.respParams
	resp.Outputs = a.outputs[:0]
	if len(outputs) > len(a.outputs) {
		resp.Outputs = make([]*pb.ModelInferResponse_InferOutputTensor, 0, len(outputs))
	}
	resp.Outputs = resp.Outputs[:len(outputs)]
	// Clients that send raw contents read raw contents (Triton's clients
	// do); the others get typed contents.
	raw := len(req.GetRawInputContents()) > 0
	if raw {
		resp.RawOutputContents = a.raw[:0]
		if len(outputs) > len(a.raw) {
			resp.RawOutputContents = make([][]byte, 0, len(outputs))
		}
		resp.RawOutputContents = resp.RawOutputContents[:len(outputs)]
	}
	for i, o := range outputs {
		switch {
		case i >= len(a.tensors) && raw:
			resp.Outputs[i], resp.RawOutputContents[i], err = tensor.EncodeRaw(o)
		case i >= len(a.tensors):
			resp.Outputs[i], err = tensor.EncodeContents(o)
		case raw:
			resp.Outputs[i] = &a.tensors[i].out
			resp.RawOutputContents[i], err = tensor.EncodeRawTo(o, &a.tensors[i].out)
		default:
			resp.Outputs[i] = &a.tensors[i].out
			err = tensor.EncodeContentsTo(o, &a.tensors[i].out, &a.tensors[i].contents)
		}
		if err != nil {
			return nil, l.Name, l.Version, status.Errorf(codes.Internal, "model %q v%s: %v", l.Name, l.Version, err)
		}
	}
	return resp, l.Name, l.Version, nil
}

// inferStorage is what answering one request needs beside the request:
// room for a few inputs, the response and a few outputs, allocated
// together, or pooled with the request in an inferCall.
type inferStorage struct {
	inputs  [2]runtime.Tensor
	resp    pb.ModelInferResponse
	outputs [2]*pb.ModelInferResponse_InferOutputTensor
	raw     [2][]byte
	tensors [2]struct {
		out      pb.ModelInferResponse_InferOutputTensor
		contents pb.InferTensorContents
	}
}

// clear drops what the storage refers to (the request's tensors, the
// model's outputs), so that a pooled call holds no memory alive but its
// own.
func (a *inferStorage) clear() {
	clear(a.inputs[:])
	a.resp.Reset()
	clear(a.outputs[:])
	clear(a.raw[:])
	for i := range a.tensors {
		a.tensors[i].out.Reset()
		a.tensors[i].contents.Reset()
	}
}

// payloadBytes is what a request's tensors hold: its raw contents and typed
// contents. It bounds the message's size the way the budget needs, without
// walking the whole message as proto.Size does.
func payloadBytes(req *pb.ModelInferRequest) int64 {
	var n int64
	for _, r := range req.GetRawInputContents() {
		n += int64(len(r))
	}
	for _, in := range req.GetInputs() {
		n += int64(len(in.GetName()) + len(in.GetDatatype()) + 8*len(in.GetShape()))
		c := in.GetContents()
		if c == nil {
			continue
		}
		n += 4*int64(len(c.GetFp32Contents())+len(c.GetIntContents())+len(c.GetUintContents())) +
			8*int64(len(c.GetFp64Contents())+len(c.GetInt64Contents())+len(c.GetUint64Contents())) +
			int64(len(c.GetBoolContents()))
		for _, b := range c.GetBytesContents() {
			n += int64(len(b)) + 2
		}
	}
	return n
}

// errRepositoryName answers a request naming a repository: a server has
// one, and Triton answers UNSUPPORTED (UNIMPLEMENTED) when it is not
// serving several, rather than ignoring the name.
var errRepositoryName = status.Error(codes.Unimplemented, "repository_name is not supported: this server has one model repository; leave it empty")

func (g *grpcService) RepositoryIndex(_ context.Context, req *pb.RepositoryIndexRequest) (*pb.RepositoryIndexResponse, error) {
	if req.GetRepositoryName() != "" {
		return nil, errRepositoryName
	}
	idx := g.s.repo.Index(req.GetReady())
	resp := &pb.RepositoryIndexResponse{Models: make([]*pb.RepositoryIndexResponse_ModelIndex, len(idx))}
	for i, e := range idx {
		resp.Models[i] = &pb.RepositoryIndexResponse_ModelIndex{Name: e.Name, Version: e.Version, State: string(e.State), Reason: e.Reason}
	}
	return resp, nil
}

func (g *grpcService) RepositoryModelLoad(ctx context.Context, req *pb.RepositoryModelLoadRequest) (*pb.RepositoryModelLoadResponse, error) {
	if req.GetRepositoryName() != "" {
		return nil, errRepositoryName
	}
	if err := g.s.controlAllowed(g.admin); err != nil {
		return nil, err
	}
	if err := g.s.repo.Load(ctx, req.GetModelName()); err != nil {
		return nil, statusError(err)
	}
	return &pb.RepositoryModelLoadResponse{}, nil
}

func (g *grpcService) RepositoryModelUnload(ctx context.Context, req *pb.RepositoryModelUnloadRequest) (*pb.RepositoryModelUnloadResponse, error) {
	if req.GetRepositoryName() != "" {
		return nil, errRepositoryName
	}
	if err := g.s.controlAllowed(g.admin); err != nil {
		return nil, err
	}
	if err := g.s.repo.Unload(ctx, req.GetModelName()); err != nil {
		return nil, statusError(err)
	}
	return &pb.RepositoryModelUnloadResponse{}, nil
}

// oneLine joins a multi-line reason (several config errors) for a header,
// where newlines are not allowed.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// serverHeader is a unary interceptor that names this server instance in
// every response's headers, so that callers can tell replicas apart.
func (s *Server) serverHeader(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	_ = grpc.SetHeader(ctx, s.headerMD)
	return next(ctx, req)
}
