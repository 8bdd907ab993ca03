// Package server serves a model repository over the Open Inference Protocol
// (KServe v2): the gRPC GRPCInferenceService with Triton's repository
// extension, grpc.health.v1 (one service name per model too), server
// reflection, the REST API of the same protocol, and /metrics. Serve drains
// in-flight requests when its context ends.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	goruntime "runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/inference/metering"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/pbcodec"
	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// Headers and parameters that name the answering server instance.
const (
	// ServerHeader is the gRPC header / HTTP header naming the server.
	ServerHeader = "x-maestro-server"
	// ServerParameter is the response parameter naming the server.
	ServerParameter = "maestro_server"
	reasonHeader    = "x-maestro-reason"
)

// extensions are the protocol extensions ServerMetadata advertises.
var extensions = []string{"model_repository"}

const (
	// DefaultMaxRequestBytes bounds a request message: a 1,024-row batch of
	// 30 FP32 features is 120 KiB, so 64 MiB leaves ample room while keeping
	// a runaway client from exhausting memory.
	DefaultMaxRequestBytes = 64 << 20
	// DefaultRequestMemoryBudget bounds the bytes requests in flight hold
	// once decoded: a few maximum-size requests at once, so that a burst
	// of them is refused (429, RESOURCE_EXHAUSTED) instead of exhausting
	// the process's memory.
	DefaultRequestMemoryBudget = 128 << 20
	// DefaultDrainTimeout is how long shutdown waits for in-flight requests.
	DefaultDrainTimeout = 30 * time.Second
	// keepaliveMinTime lets clients ping every 10s on idle connections
	// (gRPC's default enforcement of 5 min would close sidecar connections
	// that probe more often).
	keepaliveMinTime = 10 * time.Second
	// flowWindow is the HTTP/2 flow-control window clients may fill
	// before waiting for an update: a 1,024-row batch (120 KiB) then goes
	// in one flight instead of waiting for window updates mid-request.
	flowWindow = 1 << 20
	// minStreamWorkers is the fewest goroutines kept to serve RPCs: enough
	// for the 64 concurrent calls a busy client or sidecar keeps in flight
	// (a parked worker costs its stack, a few KiB).
	minStreamWorkers = 64
	// readHeaderTimeout cuts clients that open a connection and send no
	// request; bodies have their own deadlines (BodyIdleTimeout).
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes keep-alive connections idle this long, so that
	// idle clients cannot hold connections without bound.
	idleTimeout = 2 * time.Minute
)

// Config configures a Server.
type Config struct {
	// Name identifies this server instance in ServerMetadata, in the
	// x-maestro-server header and in the maestro_server response
	// parameter. Default "maestro".
	Name string
	// Version is reported by ServerMetadata. Default "dev".
	Version string
	// Models configures the model repository the server owns.
	Models repository.Options
	// Metrics receives the server's series; default a fresh registry.
	Metrics *prometheus.Registry
	// Tracing, when set, instruments gRPC and HTTP with OpenTelemetry.
	Tracing *telemetry.Tracing
	Logger  *slog.Logger
	// MaxRequestBytes bounds one request; default DefaultMaxRequestBytes.
	MaxRequestBytes int
	// RequestMemoryBudget bounds the bytes requests in flight hold once
	// decoded (REST: typed inputs and encoded outputs; gRPC: the message);
	// a request that does not fit is refused at once. Default
	// DefaultRequestMemoryBudget.
	RequestMemoryBudget int64
	// BodyIdleTimeout cuts a REST body that sends nothing for this long;
	// BodyTimeout bounds reading a whole body. Defaults
	// DefaultBodyIdleTimeout and DefaultBodyTimeout.
	BodyIdleTimeout time.Duration
	BodyTimeout     time.Duration
	// DrainTimeout bounds the graceful shutdown; default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// ModelControl allows load and unload (on the admin listener only)
	// when ModelControlExplicit; default ModelControlNone.
	ModelControl ModelControl
}

// Listeners are the sockets a server answers on; nil ones are not served.
type Listeners struct {
	GRPC net.Listener // GRPCInferenceService, health, reflection
	HTTP net.Listener // REST and /metrics
	// Admin serves the REST API and GRPCInferenceService (gRPC over
	// cleartext HTTP/2) with model load and unload; keep it on loopback or
	// a network only operators reach.
	Admin net.Listener
}

// Server is an inference server. Create it with New and run it with Serve.
type Server struct {
	cfg        Config
	repo       *repository.Repository
	metrics    *metrics
	log        *slog.Logger
	grpc       *grpc.Server
	health     *health.Server
	http       *http.Server
	admin      *http.Server // the admin listener's REST and gRPC
	adminGRPC  *grpc.Server
	draining   atomic.Bool
	budget     *budget
	readers    readers                       // REST bodies being read, cut on drain
	respParams map[string]*pb.InferParameter // shared, read-only
	headerMD   metadata.MD                   // shared, read-only
	tracer     trace.Tracer                  // nil when tracing is off
}

// New builds a server and scans the model repository. Run it with Serve,
// which releases everything when it returns.
func New(cfg Config) (*Server, error) {
	if cfg.Name == "" {
		cfg.Name = "maestro"
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.Metrics == nil {
		cfg.Metrics = telemetry.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.RequestMemoryBudget <= 0 {
		cfg.RequestMemoryBudget = DefaultRequestMemoryBudget
	}
	if cfg.BodyIdleTimeout <= 0 {
		cfg.BodyIdleTimeout = DefaultBodyIdleTimeout
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.ModelControl == "" {
		cfg.ModelControl = ModelControlNone
	}
	if _, err := ParseModelControl(string(cfg.ModelControl)); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		metrics:    newMetrics(cfg.Metrics),
		respParams: map[string]*pb.InferParameter{ServerParameter: {ParameterChoice: &pb.InferParameter_StringParam{StringParam: cfg.Name}}},
		headerMD:   metadata.Pairs(ServerHeader, cfg.Name),
	}
	if cfg.Tracing != nil {
		s.tracer = cfg.Tracing.Provider.Tracer("github.com/maestro-ml/maestro/inference/server")
	}
	opts := cfg.Models
	opts.Observer = s.metrics
	opts.Registry = metering.New(cfg.Metrics).Wrap(opts.Registry)
	if opts.Tracer == nil {
		opts.Tracer = s.tracer
	}
	if opts.Logger == nil {
		opts.Logger = cfg.Logger
	}
	repo, err := repository.New(opts)
	if err != nil {
		return nil, err
	}
	s.repo = repo
	registerCache(cfg.Metrics, repo)
	s.budget = newBudget(cfg.RequestMemoryBudget, cfg.Metrics)
	metering.RegisterResident(cfg.Metrics, repo)

	gopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRequestBytes),
		grpc.MaxSendMsgSize(cfg.MaxRequestBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		// Reused workers serve RPCs on stacks already grown, instead of a
		// new goroutine per RPC growing its stack each time (8% of CPU in
		// profiles of 1-row inference). An RPC that finds every worker
		// busy gets a new goroutine, so there are as many workers as
		// RPCs usually in flight, not as CPUs: with one per CPU, 64
		// callers still spent 15% of the server's CPU growing stacks.
		grpc.NumStreamWorkers(uint32(max(minStreamWorkers, 4*goruntime.GOMAXPROCS(0)))),
		grpc.InitialWindowSize(flowWindow),
		grpc.InitialConnWindowSize(flowWindow),
		// This server's messages only: ModelInfer decoded into reused
		// messages and encoded by hand, the rest by protobuf.
		grpc.ForceServerCodecV2(pbcodec.New()),
	}
	unary := []grpc.UnaryServerInterceptor{s.serverHeader, recoverUnary}
	if t := cfg.Tracing; t != nil {
		// Outermost, so that the span covers the others.
		spanUnary, spanStream := telemetry.GRPCServerSpans(t)
		unary = slices.Insert(unary, 0, spanUnary)
		gopts = append(gopts, grpc.ChainStreamInterceptor(spanStream))
	}
	gopts = append(gopts, grpc.ChainUnaryInterceptor(unary...))
	s.grpc = grpc.NewServer(gopts...)
	(&grpcService{s: s}).register(s.grpc)
	s.health = health.NewServer()
	s.health.SetServingStatus(pb.GRPCInferenceService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s.grpc, &healthService{Server: s.health, s: s})
	reflection.Register(s.grpc)

	handler := s.routes(false)
	if t := cfg.Tracing; t != nil {
		handler = otelhttp.NewHandler(handler, "inference",
			otelhttp.WithTracerProvider(t.Provider), otelhttp.WithPropagators(t.Propagator))
	}
	s.http = &http.Server{Handler: handler, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout}
	s.newAdmin()
	return s, nil
}

// closeUnserved releases a server that was built but never served: the
// gRPC server's stream workers and the repository. Serve does this itself.
func (s *Server) closeUnserved() {
	s.grpc.Stop()
	s.adminGRPC.Stop()
	s.repo.Close()
}

// Repository is the model repository the server serves.
func (s *Server) Repository() *repository.Repository { return s.repo }

func (s *Server) ready() bool { return !s.draining.Load() }

// Serve answers gRPC on grpcLis and HTTP on httpLis (either may be nil)
// until ctx ends, then stops taking new requests, drains the ones in flight
// for up to DrainTimeout, and unloads the models.
func (s *Server) Serve(ctx context.Context, grpcLis, httpLis net.Listener) error {
	return s.ServeListeners(ctx, Listeners{GRPC: grpcLis, HTTP: httpLis})
}

// ServeListeners is Serve with the admin listener too.
func (s *Server) ServeListeners(ctx context.Context, l Listeners) error {
	grpcLis, httpLis := l.GRPC, l.HTTP
	g, gctx := errgroup.WithContext(ctx)
	if l.Admin != nil {
		g.Go(func() error {
			if err := s.admin.Serve(l.Admin); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve admin: %w", err)
			}
			return nil
		})
	}
	if grpcLis != nil {
		g.Go(func() error {
			if err := s.grpc.Serve(grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("serve grpc: %w", err)
			}
			return nil
		})
	}
	if httpLis != nil {
		g.Go(func() error {
			if err := s.http.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve http: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		return s.drain()
	})
	err := g.Wait()
	s.repo.Close()
	return err
}

// drain makes health checks and readiness fail first, so that balancers
// stop sending, then waits for in-flight requests on both protocols.
func (s *Server) drain() error {
	s.draining.Store(true)
	s.health.Shutdown()
	// Bodies still being read are cut now: a stalled upload would
	// otherwise hold the drain for its whole timeout.
	cut := s.readers.cutAll()
	s.log.Info("draining", "timeout", s.cfg.DrainTimeout, "uploads_cut", cut)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	httpErr := s.http.Shutdown(ctx)
	if err := s.admin.Shutdown(ctx); err != nil {
		s.admin.Close()
	}
	s.adminGRPC.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
	if httpErr != nil {
		s.http.Close()
		return fmt.Errorf("drain http: %w", httpErr)
	}
	return nil
}

// observe records one inference request's outcome.
func (s *Server) observe(protocol, model, ver string, start time.Time, err error) {
	ps := s.metrics.of(model, ver).protocol(protocol)
	ps.requests.Inc()
	if err != nil {
		s.metrics.failures.WithLabelValues(model, ver, protocol, status.Code(statusError(err)).String()).Inc()
		return
	}
	ps.latency.Observe(time.Since(start).Seconds())
}

// recoverUnary turns a handler panic into an Internal error, so that no
// input can take the server down.
func recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, status.Errorf(codes.Internal, "%s panicked: %v", info.FullMethod, p)
		}
	}()
	return next(ctx, req)
}

// healthService answers grpc.health.v1 for the server ("") and for each
// model by name: a model is SERVING when its latest version loads.
type healthService struct {
	*health.Server
	s *Server
}

func (h *healthService) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	name := req.GetService()
	if name == "" || name == pb.GRPCInferenceService_ServiceDesc.ServiceName || h.s.draining.Load() {
		return h.Server.Check(ctx, req)
	}
	st := healthpb.HealthCheckResponse_SERVING
	if _, err := h.s.repo.Get(ctx, name, ""); err != nil {
		if errors.Is(err, repository.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "unknown service %q", name)
		}
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	// Recorded so that Watch streams see it too.
	h.Server.SetServingStatus(name, st)
	return &healthpb.HealthCheckResponse{Status: st}, nil
}
