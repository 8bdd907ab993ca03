package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime/builtin"
	"github.com/maestro-ml/maestro/inference/server"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// runInference serves a model repository over the Open Inference Protocol
// until ctx ends (SIGINT/SIGTERM), then drains in-flight requests.
func runInference(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("inference", stderr, `Serves the models of a repository (DIR/<model>/config.yaml, DIR/<model>/<version>/...)
over the Open Inference Protocol (KServe v2): gRPC and REST, plus /metrics.`,
		"[flags]")
	models := fs.String("models", "examples/models", "model repository `dir`, relative to the working directory")
	grpcAddr := fs.String("grpc-addr", "127.0.0.1:9000", "gRPC listen `address`")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "REST and /metrics listen `address`")
	name := fs.String("name", "maestro", "server `name` reported in ServerMetadata and the x-maestro-server header")
	budget := fs.String("memory-budget", "0", "memory budget for loaded models, e.g. 512MiB or 2GB (0: unlimited)")
	maxLoaded := fs.Int("max-loaded-models", 0, "most model versions loaded at once (0: unlimited)")
	maxReq := fs.String("max-request-size", "64MiB", "largest accepted request body or message (REST: 413 beyond it)")
	reqBudget := fs.String("request-memory-budget", "128MiB", "bytes all requests in flight may hold once decoded; past it, requests get 429 (REST) or RESOURCE_EXHAUSTED (gRPC)")
	bodyIdle := fs.Duration("body-idle-timeout", server.DefaultBodyIdleTimeout, "cut a REST request body that sends nothing for this long (408)")
	bodyTotal := fs.Duration("body-timeout", server.DefaultBodyTimeout, "cut a REST request body not received within this long (408)")
	control := fs.String("model-control", "none", "model `mode`: none refuses load and unload (as Triton's default); explicit serves them on --admin-addr only")
	adminAddr := fs.String("admin-addr", "127.0.0.1:9002", "admin listen `address` (REST and gRPC with model load and unload) when --model-control explicit; keep it on loopback or an operators' network")
	drain := fs.Duration("drain-timeout", server.DefaultDrainTimeout, "how long shutdown waits for in-flight requests")
	logs := addLogFlags(fs, "info")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "maestro inference: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	log, tracing, flush, err := logs.observe(ctx, stderr, "maestro-inference")
	if err != nil {
		return err
	}
	defer flush()
	budgetBytes, err := parseBytes(*budget)
	if err != nil {
		return fmt.Errorf("--memory-budget: %w", err)
	}
	maxReqBytes, err := parseBytes(*maxReq)
	if err != nil || maxReqBytes <= 0 || maxReqBytes > 1<<31-1 {
		return fmt.Errorf("--max-request-size %q: want a size between 1 byte and 2GiB", *maxReq)
	}

	reqBudgetBytes, err := parseBytes(*reqBudget)
	if err != nil || reqBudgetBytes <= 0 {
		return fmt.Errorf("--request-memory-budget %q: want a positive size", *reqBudget)
	}
	modelControl, err := server.ParseModelControl(*control)
	if err != nil {
		return fmt.Errorf("--model-control: %w", err)
	}
	if modelControl == server.ModelControlExplicit && *adminAddr == "" {
		return fmt.Errorf("--model-control explicit needs --admin-addr")
	}
	if *bodyIdle <= 0 || *bodyTotal <= 0 {
		return fmt.Errorf("--body-idle-timeout and --body-timeout must be positive")
	}

	cfg := server.Config{
		Name:                *name,
		Logger:              log,
		Metrics:             telemetry.NewRegistry(),
		MaxRequestBytes:     int(maxReqBytes),
		RequestMemoryBudget: reqBudgetBytes,
		BodyIdleTimeout:     *bodyIdle,
		BodyTimeout:         *bodyTotal,
		DrainTimeout:        *drain,
		ModelControl:        modelControl,
		Models: repository.Options{
			Dir:          *models,
			Registry:     builtin.Registry(),
			MemoryBudget: budgetBytes,
			MaxLoaded:    *maxLoaded,
		},
	}
	if telemetry.Enabled() {
		cfg.Tracing = tracing
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	glis, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	hlis, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		glis.Close()
		return fmt.Errorf("--http-addr: %w", err)
	}
	lis := server.Listeners{GRPC: glis, HTTP: hlis}
	admin := "off (--model-control none)"
	if modelControl == server.ModelControlExplicit {
		if lis.Admin, err = net.Listen("tcp", *adminAddr); err != nil {
			glis.Close()
			hlis.Close()
			return fmt.Errorf("--admin-addr: %w", err)
		}
		admin = lis.Admin.Addr().String()
	}
	models0 := srv.Repository().Index(false)
	log.Info("inference server listening", "name", *name, "grpc", glis.Addr().String(), "http", hlis.Addr().String(),
		"admin", admin, "models", *models, "model_versions", len(models0))
	fmt.Fprintf(stdout, "maestro inference %q: gRPC on %s, HTTP on %s, models from %s, admin %s\n", *name, glis.Addr(), hlis.Addr(), *models, admin)
	err = srv.ServeListeners(ctx, lis)
	log.Info("inference server stopped")
	return err
}

// parseBytes reads a size such as 512MiB, 2GB, 64k or 1048576.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"k", 1 << 10}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n < 0 || n*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("size %q: want a non-negative number with an optional unit (KiB, MiB, GiB, KB, MB, GB)", s)
	}
	return int64(n * float64(mult)), nil
}
