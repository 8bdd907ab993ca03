package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/controlplane/metricsource"
)

// loopFlags are the controlplane flags of the closed loop: where rollout
// state lives and where the numbers come from.
type loopFlags struct {
	stateDir   *string
	prometheus *string
	signals    *string
	replica    *string
	targets    stringsFlag
	// observeAddr and observePercent say where and how much the fanout
	// filter of an adaptive ensemble reports (controlplane.Config).
	observeAddr    *string
	observePercent *float64
}

func addLoopFlags(fs *flag.FlagSet) *loopFlags {
	f := &loopFlags{
		stateDir: fs.String("state-dir", "", "rollout state and lease `directory` (created if missing), shared by the replicas; without it rollouts are not driven"),
		prometheus: fs.String("prometheus", "", "judge rollouts on this Prometheus server's query API (`URL`, e.g. http://prometheus:9090) "+
			"instead of scraping the data plane"),
		signals: fs.String("signals", closedloop.SignalsEnvoy, "`set` of series a canary is judged on: envoy (Envoy cluster stats) or "+
			"inference (the inference servers' maestro_inference_* series of the version's modelVersion label, else mesh version vN is model version N)"),
		replica: fs.String("replica-id", "", "this replica's `name` in the rollout lease; default host name and process id"),
		observeAddr: fs.String("observe-addr", "", "`address` (host:port) at which proxies reach this admin port to post adaptive ensembles' "+
			"observations (POST /v1/observations); default the --admin-addr listener's, loopback when it binds every interface"),
		observePercent: fs.Float64("observe-percent", controlplane.DefaultObservePercent,
			"`percent` of an adaptive ensemble's requests whose members' answers the fanout filter posts, in (0, 100]"),
	}
	fs.Var(&f.targets, "metrics-target", "Prometheus text endpoint `URL` of the data plane to scrape (Envoy or gateway /stats/prometheus, "+
		"inference /metrics); repeatable")
	return f
}

// open builds the loop the flags describe, auditing to auditLog.
//
// # Errors
//
// Conflicting or malformed flags, or a state directory that cannot be
// created.
func (f *loopFlags) open(log *slog.Logger, auditLog *audit.Log) (*closedloop.Loop, error) {
	if err := closedloop.ValidSignals(*f.signals); err != nil {
		return nil, fmt.Errorf("--signals: %w", err)
	}
	if p := *f.observePercent; !(p > 0 && p <= 100) {
		return nil, fmt.Errorf("--observe-percent %v: want a percent in (0, 100]", p)
	}
	if a := *f.observeAddr; a != "" {
		// Checked again by the control plane; here it fails before any
		// certificate is issued.
		if _, port, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("--observe-addr %q: %w", a, err)
		} else if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return nil, fmt.Errorf("--observe-addr %q: want a port in 1..65535", a)
		}
	}
	cfg := closedloop.Config{StateDir: *f.stateDir, Identity: *f.replica, Signals: *f.signals, Logger: log}
	if auditLog != nil {
		cfg.Audit = auditLog
	}
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("--state-dir: %w", err)
		}
	}
	switch {
	case *f.prometheus != "" && len(f.targets) > 0:
		return nil, fmt.Errorf("--prometheus and --metrics-target exclude each other: rollouts read one metric source")
	case *f.prometheus != "":
		p, err := metricsource.NewPrometheus(*f.prometheus, nil)
		if err != nil {
			return nil, fmt.Errorf("--prometheus: %w", err)
		}
		cfg.Source = p
	default:
		for _, raw := range f.targets {
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, fmt.Errorf("--metrics-target %q: want an http or https URL", raw)
			}
			cfg.Targets = append(cfg.Targets, metricsource.Target{Name: u.Host + u.Path, URL: raw})
		}
	}
	loop, err := closedloop.New(cfg)
	if err != nil {
		return nil, err
	}
	log.Info("closed loop", "state_dir", cfg.StateDir, "metrics", loop.String(), "signals", *f.signals, "replica", loop.Identity())
	return loop, nil
}
