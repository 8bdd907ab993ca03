// Package closedloop runs the controllers that change the mesh from what
// the data plane measures: the rollout controller (canary steps judged on
// metrics) and the adaptive-ensemble tuner, with the metric source they
// read. It turns their results into one overlay the control plane applies
// to the policy before building the model, and tells the control plane when
// that overlay changed, so new weights are pushed without any file change.
//
// A Loop ticks only while the policy has rollouts or adaptive ensembles (or
// state left to clear), at a quarter of the shortest step or evaluation
// interval, so a breach is acted on well within one interval of its
// judgement being due.
package closedloop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/maestro-ml/maestro/controlplane/adaptive"
	"github.com/maestro-ml/maestro/controlplane/metricsource"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/rollout"
)

// Tick bounds: a quarter of the shortest interval, but never more often
// than MinTick (the scrape load on the data plane) nor less often than
// MaxTick (how late a judgement may be taken).
const (
	MinTick = 100 * time.Millisecond
	MaxTick = 5 * time.Second
)

// Config configures a Loop.
type Config struct {
	// StateDir holds the rollout state and lease (rollout.Config); empty
	// leaves rollouts undriven: the policy's own splits are served and
	// the status says why.
	StateDir string
	// Identity names this replica in the rollout lease; default the host
	// name and process id.
	Identity string
	// Source gives the numbers; nil scrapes Targets.
	Source metricsource.Source
	// Targets are the data plane's Prometheus endpoints scraped when
	// Source is nil; none holds every rollout (never promotes blind).
	Targets []metricsource.Target
	// Signals names the series a version is judged on: SignalsEnvoy
	// (default) or SignalsInference. SignalsFunc, if set, is used instead.
	Signals     string
	SignalsFunc rollout.SignalsFunc
	// Audit records every decision and weight change; nil records none.
	Audit rollout.Auditor
	// Tuner settings (feedback store bounds, tolerance).
	Tuner adaptive.Config
	// LeaseTTL is the rollout lease's; default that of rollout.Config.
	LeaseTTL time.Duration
	// Now is the clock; nil is time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Loop runs the controllers. Apply, Loaded, Status and the feedback
// handlers are safe from any goroutine while Run runs.
type Loop struct {
	cfg     Config
	ctrl    *rollout.Controller // nil without a state directory
	tuner   *adaptive.Tuner
	scraper *metricsource.Scraper // nil with an external Source
	// source is what the rollouts and member counters are read from; nil
	// when there is none.
	source  metricsource.Source
	undrive string // why rollouts are not driven, if they are not
	changed chan struct{}
	wake    chan struct{}

	mu     sync.Mutex
	policy *policy.Mesh
	// targets counts the scrape targets (SetTargets changes them).
	targets int
	// current is the policy of the running tick (inferenceSignals).
	current *policy.Mesh
	served  string // the overlays last reported, as JSON
	// fed is when each adaptive route's member counters were last read.
	fed map[string]time.Time
}

// New returns a Loop of cfg.
//
// # Errors
//
// An unknown signal set, or a state directory missing or not a directory.
func New(cfg Config) (*Loop, error) {
	if err := ValidSignals(cfg.Signals); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Identity == "" {
		host, _ := os.Hostname()
		cfg.Identity = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	l := &Loop{cfg: cfg, changed: make(chan struct{}, 1), wake: make(chan struct{}, 1), targets: len(cfg.Targets)}
	src := cfg.Source
	if src == nil {
		l.scraper = metricsource.NewScraper(metricsource.ScraperConfig{Targets: cfg.Targets, Now: cfg.Now})
		if len(cfg.Targets) > 0 {
			src = l.scraper
		}
	}
	l.source = src
	if cfg.StateDir == "" {
		l.undrive = "no state directory (--state-dir): rollouts are not driven, the policy's splits are served"
	} else {
		ctrl, err := rollout.New(rollout.Config{
			StateDir: cfg.StateDir, Source: src, Signals: l.signals(), Audit: cfg.Audit,
			Identity: cfg.Identity, LeaseTTL: cfg.LeaseTTL, Now: cfg.Now, Logger: cfg.Logger,
		})
		if err != nil {
			return nil, err
		}
		l.ctrl = ctrl
	}
	tc := cfg.Tuner
	tc.Now, tc.Logger = cfg.Now, cfg.Logger
	if cfg.Audit != nil {
		tc.Audit = cfg.Audit
	}
	l.tuner = adaptive.New(tc)
	return l, nil
}

// SetTargets replaces the scrape targets of a Loop made with Targets and
// no Source: for data-plane nodes whose metrics ports are known only once
// they run, after the control plane (`maestro up`'s gateways). Scrapes
// already taken are kept; a target new to them has no rate until its
// second scrape.
//
// # Errors
//
// A Loop with an external Source, or made without targets: it has no
// scraper of its own to give them to.
func (l *Loop) SetTargets(ts []metricsource.Target) error {
	if l.cfg.Source != nil || len(l.cfg.Targets) == 0 {
		return errors.New("set scrape targets: the loop does not scrape (it has an external metric source, or was made without targets)")
	}
	l.scraper.SetTargets(ts)
	l.mu.Lock()
	l.targets = len(ts)
	l.mu.Unlock()
	return nil
}

// Tuner is the adaptive tuner, for Observe and Label.
func (l *Loop) Tuner() *adaptive.Tuner { return l.tuner }

// Apply returns pm with the rollouts' splits and the adaptive weights in
// place of the policy's; pm is not modified.
func (l *Loop) Apply(pm *policy.Mesh) *policy.Mesh {
	if l.ctrl != nil {
		pm = l.ctrl.View().Overlay.Apply(pm)
	}
	return l.tuner.View().Overlay.Apply(pm)
}

// Loaded tells the loop the policy now served (without overlays), waking
// it so a new rollout starts at once.
func (l *Loop) Loaded(pm *policy.Mesh) {
	l.mu.Lock()
	l.policy = pm
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Changed receives a value when the overlays changed since they were last
// reported: the control plane then rebuilds and pushes.
func (l *Loop) Changed() <-chan struct{} { return l.changed }

// Run ticks until ctx ends, then releases the rollout lease.
func (l *Loop) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		l.mu.Lock()
		pm := l.policy
		l.mu.Unlock()
		every := l.period(pm)
		if every > 0 {
			l.Tick(ctx, pm)
			timer.Reset(every)
		}
		select {
		case <-ctx.Done():
			if l.ctrl != nil {
				if err := l.ctrl.Release(); err != nil {
					l.cfg.Logger.Warn("release rollout lease", "error", err)
				}
			}
			return nil
		case <-l.wake:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// Tick runs one round against pm: scrape, judge the rollouts, re-weigh the
// ensembles, and report a change of the overlays on Changed.
func (l *Loop) Tick(ctx context.Context, pm *policy.Mesh) {
	if pm == nil {
		return
	}
	l.mu.Lock()
	l.current = pm
	l.mu.Unlock()
	adaptiveRoutes := hasAdaptive(pm)
	if l.scraper != nil && len(l.cfg.Targets) > 0 && ((l.ctrl != nil && hasRollouts(pm)) || adaptiveRoutes) {
		if err := l.scraper.Scrape(ctx); err != nil {
			// Recorded by the scraper: the rollouts it concerns hold.
			l.cfg.Logger.Debug("scrape", "error", err)
		}
	}
	var errs []error
	if l.ctrl != nil {
		errs = append(errs, l.ctrl.Tick(ctx, pm))
	}
	if l.source != nil && adaptiveRoutes {
		l.feedCounts(ctx, pm, l.source, l.cfg.Now())
	}
	errs = append(errs, l.tuner.Evaluate(ctx, pm))
	if err := errors.Join(errs...); err != nil {
		l.cfg.Logger.Error("closed-loop tick", "error", err)
	}
	l.report()
}

// report signals Changed when the overlays differ from those last reported.
func (l *Loop) report() {
	var ro rollout.Overlay
	if l.ctrl != nil {
		ro = l.ctrl.View().Overlay
	}
	data, err := json.Marshal(struct {
		R rollout.Overlay
		A adaptive.Overlay
	}{ro, l.tuner.View().Overlay})
	if err != nil {
		data = []byte(err.Error()) // plain maps of numbers: cannot happen
	}
	l.mu.Lock()
	same := string(data) == l.served
	l.served = string(data)
	l.mu.Unlock()
	if same {
		return
	}
	select {
	case l.changed <- struct{}{}:
	default: // a rebuild is already pending; it will read the newest overlays
	}
}

// period is how often to tick for pm: 0 when there is nothing to drive.
func (l *Loop) period(pm *policy.Mesh) time.Duration {
	if pm == nil {
		return 0
	}
	var shortest time.Duration
	shorter := func(d time.Duration) {
		if d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	for _, r := range pm.Routes {
		if ro := r.Spec.Rollout; ro != nil && l.ctrl != nil {
			shorter(ro.StepInterval.D())
		}
		if e := r.Spec.Ensemble; e != nil && e.Weights == policy.WeightsAdaptive && e.Adaptive != nil {
			shorter(e.Adaptive.Interval.D())
		}
	}
	if shortest == 0 {
		// Nothing to drive, but state left from an earlier policy must
		// still be cleared (rollouts removed, ensembles made static).
		if (l.ctrl != nil && len(l.ctrl.View().Rollouts) > 0) || len(l.tuner.View().Overlay) > 0 {
			return MinTick
		}
		return 0
	}
	return min(max(shortest/4, MinTick), MaxTick)
}

func hasAdaptive(pm *policy.Mesh) bool {
	for _, r := range pm.Routes {
		if e := r.Spec.Ensemble; e != nil && e.Weights == policy.WeightsAdaptive {
			return true
		}
	}
	return false
}

func hasRollouts(pm *policy.Mesh) bool {
	for _, r := range pm.Routes {
		if r.Spec.Rollout != nil {
			return true
		}
	}
	return false
}

// Identity is this replica's name in the rollout lease.
func (l *Loop) Identity() string { return l.cfg.Identity }

// String describes the loop's sources, for the start-up log.
func (l *Loop) String() string {
	switch {
	case l.cfg.Source != nil:
		return "an external metric source"
	case len(l.cfg.Targets) > 0:
		l.mu.Lock()
		defer l.mu.Unlock()
		return fmt.Sprintf("%d scrape targets", l.targets)
	default:
		return "no metric source (rollouts hold)"
	}
}
