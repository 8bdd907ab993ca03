package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/internal/localmesh"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// runUp starts the whole mesh on the embedded demo (or a given policy).
func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("up", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: maestro up [flags]")
		fmt.Fprintln(stderr, "\nStarts, in one process, the control plane and an inference server for every local")
		fmt.Fprintln(stderr, "endpoint of the policy (by default the embedded demo mesh, written to --dir), writes")
		fmt.Fprintln(stderr, "Envoy and gRPC bootstraps to --dir, and prints live request counts per version.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	dir := fs.String("dir", localmesh.DefaultDir, "working directory for the demo policy, models and bootstrap files")
	policyPath := fs.String("f", "", "policy file to run (default: <dir>/mesh.yaml, the embedded demo)")
	models := fs.String("models", "", "model repository (default: <dir>/models, the embedded demo models)")
	xdsAddr := fs.String("xds-addr", controlplane.DefaultXDSAddr, "control plane xDS address")
	adminAddr := fs.String("admin-addr", controlplane.DefaultAdminAddr, "control plane admin address (/metrics)")
	demo := fs.Bool("demo-traffic", false, "send requests through proxyless gRPC xDS clients so the splits show without Envoy")
	rate := fs.Float64("rate", localmesh.DefaultRate, "demo requests per second per route")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger, err := telemetry.NewLogger(stderr, level, *logFormat)
	if err != nil {
		return fmt.Errorf("--log-format: %w", err)
	}
	tracing, err := telemetry.NewTracing(ctx, "maestro-up")
	if err != nil {
		return err
	}
	defer func() {
		// Flush on exit, bounded so an unreachable collector cannot hold
		// the process.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tracing.Shutdown(sctx); err != nil {
			logger.Warn("flush traces", "error", err)
		}
	}()
	cfg := localmesh.Config{
		Dir: *dir, Policy: *policyPath, Models: *models,
		XDSAddr: *xdsAddr, AdminAddr: *adminAddr,
		DemoTraffic: *demo, Rate: *rate,
		Out: stdout, Logger: logger,
	}
	if telemetry.Enabled() {
		cfg.Tracing = tracing
	}
	err = localmesh.Run(ctx, cfg)
	if err == nil {
		fmt.Fprintln(stdout, "stopped")
	}
	return err
}
