package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// runControlplane serves the policy at -f over xDS until ctx ends,
// reloading it on every change.
func runControlplane(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("controlplane", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: maestro controlplane -f PATH [-f PATH...] [flags]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Serves the mesh policy (files or directories) to Envoy and proxyless gRPC clients")
		fmt.Fprintln(stderr, "over xDS v3 (ADS SotW and delta, and the per-type services), reloading it on change.")
		fmt.Fprintln(stderr, "Metrics are on http://ADMIN/metrics, node status on http://ADMIN/debug/status.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	var paths stringsFlag
	fs.Var(&paths, "f", "policy `path` (file or directory); repeatable")
	xdsAddr := fs.String("xds-addr", controlplane.DefaultXDSAddr, "xDS gRPC listen `address`")
	adminAddr := fs.String("admin-addr", controlplane.DefaultAdminAddr, "admin HTTP listen `address` (/metrics, /healthz, /readyz, /debug/status)")
	insecure := fs.Bool("insecure", false, "serve xDS in plaintext (required until the xDS port serves mTLS)")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(paths) == 0 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "maestro controlplane: give the policy with -f PATH (and no other arguments)")
		return errUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log, err := telemetry.NewLogger(stderr, level, *logFormat)
	if err != nil {
		return fmt.Errorf("--log-format: %w", err)
	}
	tracing, err := telemetry.NewTracing(ctx, "maestro-controlplane")
	if err != nil {
		return err
	}
	defer func() {
		if err := tracing.Shutdown(context.WithoutCancel(ctx)); err != nil {
			log.Warn("flush traces", "error", err)
		}
	}()
	err = controlplane.Run(ctx, controlplane.Config{
		Paths:     paths,
		Load:      controlplane.PolicyLoader(controlplane.CAFromPolicy),
		XDSAddr:   *xdsAddr,
		AdminAddr: *adminAddr,
		Insecure:  *insecure,
		Logger:    log,
		Registry:  telemetry.NewRegistry(),
		Tracer:    tracing.Provider,
	})
	if errors.Is(err, controlplane.ErrInsecure) {
		return fmt.Errorf("%w (mTLS on the xDS port is not available yet)", err)
	}
	if err != nil {
		// The first load's problems are already one a line in err.
		return err
	}
	return nil
}
