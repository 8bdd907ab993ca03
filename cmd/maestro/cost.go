package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/maestro-ml/maestro/controlplane/cost"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// runCost reports what each model version and route costs over a window,
// read from inference servers' /metrics or from a Prometheus.
func runCost(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("cost", stderr, `Report what each model version and route costs over a window: predictions,
core-seconds, GB-seconds and dollars per 1M predictions, read from inference
servers' /metrics (--target) or from a Prometheus (--prometheus), with
recommendations for idle models and surplus replicas.`,
		"--target URL [--target URL ...] [-f POLICY] [--window 1m]",
		"--prometheus URL [-f POLICY] [--window 1h]")
	var targets, files stringsFlag
	fs.Var(&targets, "target", "inference server metrics, URL or SERVICE/VERSION=URL (repeatable), e.g. fraud/v2=http://127.0.0.1:8080/metrics")
	prom := fs.String("prometheus", "", "Prometheus base URL to query instead of --target")
	fs.Var(&files, "f", "policy file or directory (repeatable): attributes costs to its routes")
	window := fs.Duration("window", time.Minute, "measurement window: watched live with --target, looked back on with --prometheus")
	interval := fs.Duration("interval", 10*time.Second, "with --target, how often to scrape during the window (memory is integrated between scrapes)")
	cpuPrice := fs.Float64("cpu-price", cost.DefaultCPUCoreHour, "dollars per core-hour (default: GCE on-demand vCPU, us-central1; see docs/cost.md)")
	memPrice := fs.Float64("memory-price", cost.DefaultMemoryGBHour, "dollars per GB-hour (default: GCE on-demand memory, us-central1; see docs/cost.md)")
	util := fs.Float64("target-utilization", 0.6, "share of a replica's cores the load may fill before a replica is needed")
	replicaCores := fs.Float64("replica-cores", 0, "cores per replica (default: each server's GOMAXPROCS)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case (len(targets) == 0) == (*prom == ""):
		fmt.Fprintln(stderr, "maestro cost: give --target URL (repeatable) or --prometheus URL")
		return errUsage
	case *window <= 0 || *interval <= 0:
		fmt.Fprintln(stderr, "maestro cost: --window and --interval must be positive")
		return errUsage
	case *cpuPrice < 0 || *memPrice < 0:
		fmt.Fprintln(stderr, "maestro cost: prices must not be negative")
		return errUsage
	}
	opts := cost.Options{
		Prices:            cost.Prices{CPUCoreHour: *cpuPrice, MemoryGBHour: *memPrice},
		TargetUtilization: *util,
		ReplicaCores:      *replicaCores,
	}
	if len(files) > 0 {
		mesh, err := policy.Load(ctx, files...)
		if err != nil {
			return err
		}
		opts.Mesh = mesh
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var rows []cost.Row
	var err error
	span := *window
	if *prom != "" {
		rows, opts.Servers, err = cost.QueryPrometheus(ctx, client, *prom, *window, time.Now())
	} else {
		rows, opts.Servers, span, err = watch(ctx, client, targets, *window, *interval, stderr)
	}
	if err != nil {
		return err
	}
	rep, err := cost.Build(rows, span, opts)
	if err != nil {
		return err
	}
	return rep.Write(stdout)
}

// watch scrapes every target at the start of the window, every interval,
// and at its end. It returns the span the scrapes really covered, which
// the rates and averages must use rather than the nominal window.
func watch(ctx context.Context, client *http.Client, raw []string, window, interval time.Duration, stderr io.Writer) ([]cost.Row, []cost.Server, time.Duration, error) {
	targets := make([]cost.Target, len(raw))
	for i, s := range raw {
		t, err := cost.ParseTarget(s)
		if err != nil {
			return nil, nil, 0, err
		}
		targets[i] = t
	}
	samples := make([][]cost.Sample, len(targets))
	scrapeAll := func() error {
		g, gctx := errgroup.WithContext(ctx)
		got := make([]cost.Sample, len(targets))
		for i, t := range targets {
			g.Go(func() (err error) {
				got[i], err = cost.Scrape(gctx, client, t)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		for i := range targets {
			samples[i] = append(samples[i], got[i])
		}
		return nil
	}
	if err := scrapeAll(); err != nil {
		return nil, nil, 0, err
	}
	fmt.Fprintf(stderr, "measuring %d server(s) for %v...\n", len(targets), window)
	end := time.Now().Add(window)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	stop := time.NewTimer(window)
	defer stop.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return nil, nil, 0, errors.New("interrupted before the window ended")
		case <-stop.C:
			done = true
		case <-tick.C:
			if time.Until(end) < interval/2 {
				continue // the final scrape is close
			}
		}
		if err := scrapeAll(); err != nil {
			return nil, nil, 0, err
		}
	}
	var rows []cost.Row
	var servers []cost.Server
	var span time.Duration
	for i, t := range targets {
		rows = append(rows, cost.Integrate(t, samples[i])...)
		servers = append(servers, cost.ServerCPU(t, samples[i]))
		span = max(span, samples[i][len(samples[i])-1].At.Sub(samples[i][0].At))
	}
	return rows, servers, span, nil
}
