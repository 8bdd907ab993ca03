package main

import (
	"context"
	"fmt"
	"io"

	"go.opentelemetry.io/otel"

	"github.com/maestro-ml/maestro/cmd/maestro/internal/localmesh"
	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// runUp starts the whole mesh on the embedded demo (or a given policy).
func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("up", stderr, `Starts, in one process, the control plane and an inference server for every local
endpoint of the policy (by default the embedded demo mesh, written to --dir), a built-in
gateway for every Gateway of the policy (running the fanout and slo filters, so ensembles,
shadows and SLO metering work without Envoy), writes Envoy and gRPC bootstraps to --dir, and
prints live request counts per version and, per route, what the gateways' filters did and
the control plane's rollouts and adaptive ensemble weights.`,
		"[flags]")
	dir := fs.String("dir", localmesh.DefaultDir, "working directory for the demo policy, models and bootstrap files")
	policyPath := fs.String("f", "", "policy file to run (default: <dir>/mesh.yaml and <dir>/mesh-rest.yaml, the embedded demo)")
	models := fs.String("models", "", "model repository (default: <dir>/models, the embedded demo models)")
	xdsAddr := fs.String("xds-addr", controlplane.DefaultXDSAddr, "control plane xDS address")
	adminAddr := fs.String("admin-addr", controlplane.DefaultAdminAddr, "control plane admin address (/metrics)")
	demo := fs.Bool("demo-traffic", false, "send requests through proxyless gRPC xDS clients and through the gateways, so splits, ensembles and shadows show")
	rate := fs.Float64("rate", localmesh.DefaultRate, "demo requests per second per route")
	wasmDir := fs.String("wasm-dir", "", "`dir` the policy's relative .wasm paths resolve against for the built-in gateways (default: the working directory)")
	envoy := fs.String("envoy", "", "run Envoy for the gateways instead of the built-in gateway: `auto` (an envoy on PATH, if any) or the envoy binary's path")
	logs := addLogFlags(fs, "warn")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger, tracing, flush, err := logs.observe(ctx, stderr, "maestro-up")
	if err != nil {
		return err
	}
	defer flush()
	// The demo policy names a trace collector that is not running: the
	// gateways' failed exports would otherwise print to stderr every few
	// seconds through OpenTelemetry's default error handler.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { logger.Debug("telemetry", "error", err) }))
	cfg := localmesh.Config{
		Dir: *dir, Policy: *policyPath, Models: *models,
		XDSAddr: *xdsAddr, AdminAddr: *adminAddr,
		DemoTraffic: *demo, Rate: *rate, WasmDir: *wasmDir, Envoy: *envoy,
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
