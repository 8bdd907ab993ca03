package server

import (
	"context"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/pbcodec"
)

// inferCall is one ModelInfer's request and response, reused across calls:
// the codec (pbcodec) decodes a request into the storage the previous one
// left, and hands the call back once it has encoded the response. A call
// that fails is not reused: the model or the batcher may still hold its
// request's tensors (a cancelled caller's rows are evaluated later).
//
// gRPC hands the response to stats handlers as an OutPayload after the
// codec has encoded (and so released) it: a stats handler on this server
// must not read payloads. It installs none: its spans come from
// interceptors (telemetry.GRPCServerSpans).
type inferCall struct {
	req    pb.ModelInferRequest
	out    inferStorage
	reply  inferReply
	info   grpc.UnaryServerInfo
	handle grpc.UnaryHandler
	pool   *sync.Pool
}

// inferReply is the response handed to gRPC; the codec releases it once
// encoded.
type inferReply struct {
	*pb.ModelInferResponse
	call *inferCall
}

var _ pbcodec.Reply = (*inferReply)(nil)

func (r *inferReply) InferResponse() *pb.ModelInferResponse { return r.ModelInferResponse }

// Release returns the call to its pool. The request keeps its storage for
// the next one; the response lets go of the model's outputs.
func (r *inferReply) Release() {
	c := r.call
	c.out.clear()
	c.pool.Put(c)
}

// newCallPool makes g's pool of calls.
func (g *grpcService) newCallPool() {
	g.calls.New = func() any {
		c := &inferCall{pool: &g.calls}
		c.reply = inferReply{ModelInferResponse: &c.out.resp, call: c}
		c.info = grpc.UnaryServerInfo{Server: g, FullMethod: pb.GRPCInferenceService_ModelInfer_FullMethodName}
		c.handle = func(ctx context.Context, req any) (any, error) {
			r, ok := req.(*pb.ModelInferRequest)
			if !ok {
				return nil, status.Errorf(codes.Internal, "an interceptor replaced the request with a %T", req)
			}
			if _, err := g.modelInfer(ctx, r, &c.out); err != nil {
				return nil, err
			}
			return &c.reply, nil
		}
		return c
	}
}

// modelInferHandler stands for the generated ModelInfer handler: the same
// steps, on a pooled call instead of a new request and response.
func (g *grpcService) modelInferHandler(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	c := g.calls.Get().(*inferCall)
	if err := dec(&c.req); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return c.handle(ctx, &c.req)
	}
	return interceptor(ctx, &c.req, &c.info, c.handle)
}

// register serves g on gs, with ModelInfer on pooled calls.
func (g *grpcService) register(gs *grpc.Server) {
	g.newCallPool()
	desc := pb.GRPCInferenceService_ServiceDesc
	desc.Methods = slices.Clone(desc.Methods)
	for i := range desc.Methods {
		if desc.Methods[i].MethodName == "ModelInfer" {
			desc.Methods[i].Handler = g.modelInferHandler
		}
	}
	gs.RegisterService(&desc, g)
}
