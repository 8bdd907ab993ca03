package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/maestro-ml/maestro/internal/telemetry"
)

// traceFlushTimeout bounds the flush of traces on exit, so an unreachable
// collector cannot hold the process.
const traceFlushTimeout = 5 * time.Second

// logFlags are the --log-level and --log-format flags every server command
// takes.
type logFlags struct{ level, format *string }

func addLogFlags(fs *flag.FlagSet, defaultLevel string) logFlags {
	return logFlags{
		level:  fs.String("log-level", defaultLevel, "log `level`: debug, info, warn or error"),
		format: fs.String("log-format", "text", "log `format`: text or json"),
	}
}

// observe builds the logger from the flags and the tracing the standard
// OTEL_* variables ask for, under service. flush writes out the spans still
// buffered; call it on exit.
func (lf logFlags) observe(ctx context.Context, stderr io.Writer, service string) (log *slog.Logger, tracing *telemetry.Tracing, flush func(), err error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(*lf.level)); err != nil {
		return nil, nil, nil, fmt.Errorf("--log-level: %w", err)
	}
	log, err = telemetry.NewLogger(stderr, level, *lf.format)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--log-format: %w", err)
	}
	tracing, err = telemetry.NewTracing(ctx, service)
	if err != nil {
		return nil, nil, nil, err
	}
	flush = func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), traceFlushTimeout)
		defer cancel()
		if err := tracing.Shutdown(sctx); err != nil {
			log.Warn("flush traces", "error", err)
		}
	}
	return log, tracing, flush, nil
}
