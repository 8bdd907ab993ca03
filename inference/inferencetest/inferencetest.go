// Package inferencetest starts real Maestro inference servers on loopback
// for tests, in this package and in others (control plane, filters, mesh
// tests that need backends to route to).
//
//	srv := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1"})
//	client := srv.Client(t)            // pb.GRPCInferenceServiceClient
//	http.Get("http://" + srv.HTTPAddr + "/v2/health/ready")
//
// Each server listens on 127.0.0.1 with random ports, is ready when Start
// returns, and drains and stops in t.Cleanup. Every answer names the server
// (Options.Name) in the x-maestro-server header and the maestro_server
// response parameter, so traffic-split tests can count answers per backend.
//
// For models of your own, write a repository with WriteModel; its models use
// the small deterministic runtime of this package (see TestModel), so a test
// needs no real model artifact.
package inferencetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/server"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// startTimeout bounds how long Start waits for the server to answer and
// Cleanup waits for it to drain.
const startTimeout = 10 * time.Second

// Options configures a test server. The zero value serves the demo model
// repository (examples/models) as server "inferencetest".
type Options struct {
	// ModelDir is the model repository; default examples/models at the
	// module root.
	ModelDir string
	// Registry maps config.yaml runtime names to loaders; default
	// Registry().
	Registry runtime.Registry
	// Name identifies the server in answers; default "inferencetest".
	Name string
	// MemoryBudget and MaxLoaded bound the model cache (0: unbounded).
	MemoryBudget int64
	MaxLoaded    int
	// Logger receives the server's logs; default discarded.
	Logger *slog.Logger
	// Tracing, if set, instruments the server with OpenTelemetry (e.g. an
	// SDK provider with a span recorder, to assert on traces).
	Tracing *telemetry.Tracing
	// ModelControl, when true, runs the server with explicit model control
	// and an admin listener (Server.AdminAddr) serving load and unload.
	ModelControl bool
}

// Server is a running test server.
type Server struct {
	Name     string
	GRPCAddr string // host:port
	HTTPAddr string // host:port
	// AdminAddr is the admin listener (REST and gRPC, with load and
	// unload) when Options.ModelControl is set.
	AdminAddr string
	// Metrics is the server's Prometheus registry, to assert on series.
	Metrics *prometheus.Registry
	// Server is the server itself, e.g. for its Repository.
	Server *server.Server

	stop func()
}

// Start starts a server and waits until it answers ServerReady; the server
// drains and stops when the test ends (or earlier with Stop).
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.ModelDir == "" {
		opts.ModelDir = filepath.Join(ModuleRoot(t), "examples", "models")
	}
	if opts.Registry == nil {
		opts.Registry = Registry()
	}
	if opts.Name == "" {
		opts.Name = "inferencetest"
	}
	reg := telemetry.NewRegistry()
	control := server.ModelControlNone
	if opts.ModelControl {
		control = server.ModelControlExplicit
	}
	srv, err := server.New(server.Config{
		ModelControl: control,
		Name:         opts.Name,
		Metrics:      reg,
		Logger:       opts.Logger,
		Tracing:      opts.Tracing,
		Models: repository.Options{
			Dir:          opts.ModelDir,
			Registry:     opts.Registry,
			MemoryBudget: opts.MemoryBudget,
			MaxLoaded:    opts.MaxLoaded,
		},
		DrainTimeout: startTimeout,
	})
	if err != nil {
		t.Fatalf("inferencetest: new server: %v", err)
	}
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("inferencetest: listen: %v", err)
	}
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		glis.Close()
		t.Fatalf("inferencetest: listen: %v", err)
	}
	lis := server.Listeners{GRPC: glis, HTTP: hlis}
	if opts.ModelControl {
		if lis.Admin, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			glis.Close()
			hlis.Close()
			t.Fatalf("inferencetest: listen: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListeners(ctx, lis) }()
	s := &Server{
		Name:     opts.Name,
		GRPCAddr: glis.Addr().String(),
		HTTPAddr: hlis.Addr().String(),
		Metrics:  reg,
		Server:   srv,
	}
	stopped := false
	s.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("inferencetest: server %s: %v", opts.Name, err)
			}
		case <-time.After(2 * startTimeout):
			t.Errorf("inferencetest: server %s did not stop within %v", opts.Name, 2*startTimeout)
		}
	}
	if lis.Admin != nil {
		s.AdminAddr = lis.Admin.Addr().String()
	}
	t.Cleanup(s.Stop)
	if err := s.waitReady(); err != nil {
		t.Fatalf("inferencetest: server %s: %v", opts.Name, err)
	}
	return s
}

// Stop drains and stops the server now; it is safe to call more than once.
// Call it from the test's goroutine.
func (s *Server) Stop() { s.stop() }

func (s *Server) waitReady() error {
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// WaitForReady queues the call until the connection is up, so one call
	// is the readiness wait.
	resp, err := pb.NewGRPCInferenceServiceClient(conn).ServerReady(ctx, &pb.ServerReadyRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	if !resp.GetReady() {
		return errors.New("server reports not ready")
	}
	return nil
}

// Conn dials the server's gRPC port; the connection closes when the test
// ends.
func (s *Server) Conn(t testing.TB) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("inferencetest: dial %s: %v", s.GRPCAddr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Client is a GRPCInferenceService client on a fresh connection.
func (s *Server) Client(t testing.TB) pb.GRPCInferenceServiceClient {
	t.Helper()
	return pb.NewGRPCInferenceServiceClient(s.Conn(t))
}

// ModuleRoot finds the directory holding go.mod, from the test's working
// directory upwards.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("inferencetest: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("inferencetest: no go.mod above the working directory")
		}
		dir = parent
	}
}
