// Package rollout is the canary controller: for every route with a
// rollout it moves the promoted version through its weight steps, judging
// each step on the version's own metrics (error rate, latency percentiles,
// error-budget burn rates, shadow agreement), and advances, holds, or
// rolls back to 0 and marks the rollout failed. It never promotes blind: a
// step without enough requests, or whose numbers the metric source cannot
// give, holds.
//
// The policy stays the user's: the controller's weights are an Overlay the
// control plane applies to the policy before building the model. State is
// a file in a state directory, written atomically and read at every tick,
// so a restarted control plane resumes where it was and a replica taking
// over continues the same rollouts. Only the replica holding the Lease
// makes decisions; the others read the state and serve the same overlay.
// Every decision is an audit event carrying the numbers behind it.
package rollout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/controlplane/metricsource"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// Auditor records decisions; *audit.Log is one.
type Auditor interface {
	Record(ctx context.Context, ev audit.Event) error
}

// SignalsFunc says which series a route's version is judged on.
type SignalsFunc func(r *policy.Route, service, version string) metricsource.Signals

// DefaultSignals judges a version on its cluster's upstream statistics
// (metricsource.EnvoyClusterSignals of model.ClusterName) and, when the
// route compares it as a shadow, on the fanout filter's agreement rows.
func DefaultSignals(r *policy.Route, service, version string) metricsource.Signals {
	cluster := model.ClusterName(service, version)
	s := metricsource.EnvoyClusterSignals(cluster)
	s.Agree, s.Disagree = metricsource.ShadowAgreement(r.Metadata.Name, cluster)
	return s
}

// Config configures a Controller.
type Config struct {
	// StateDir holds StateFile and the lease; replicas that share it
	// share the rollouts. It must exist.
	StateDir string
	// Source gives the numbers; nil holds every rollout.
	Source metricsource.Source
	// Signals picks the series; nil is DefaultSignals.
	Signals SignalsFunc
	// Audit records every decision; nil records none.
	Audit Auditor
	// Identity names this replica in the lease (e.g. host name and pid).
	Identity string
	// LeaseTTL is how long a replica holds the lease without renewing it:
	// a few ticks. Default 30s.
	LeaseTTL time.Duration
	// Now is the clock; nil is time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Controller drives the rollouts. Tick runs one round; Run ticks until
// its context ends. View is safe to call at any time from any goroutine.
type Controller struct {
	cfg   Config
	lease *Lease
	mu    sync.Mutex // one Tick at a time
	view  atomic.Pointer[View]
}

// View is what the controller shows: a snapshot, never modified once
// published (for /debug/status and maestro status).
type View struct {
	// Leader reports whether this replica drives the rollouts; Holder
	// names the replica that does.
	Leader bool   `json:"leader"`
	Holder string `json:"holder"`
	// Overlay is the weights to serve.
	Overlay Overlay `json:"overlay"`
	// Rollouts are the states, sorted by route.
	Rollouts []State `json:"rollouts"`
	// Error is the last tick's failure, if it failed.
	Error string `json:"error,omitempty"`
}

// New returns a controller of cfg.
func New(cfg Config) (*Controller, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("rollout controller: a state directory is required")
	}
	if fi, err := os.Stat(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("rollout controller: state directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("rollout controller: state directory %q is not a directory", cfg.StateDir)
	}
	if cfg.Signals == nil {
		cfg.Signals = DefaultSignals
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	lease, err := NewLease(cfg.StateDir, cfg.Identity, cfg.LeaseTTL, cfg.Now)
	if err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg, lease: lease}
	c.view.Store(&View{Overlay: Overlay{}})
	return c, nil
}

// View returns the latest snapshot; it is shared, so read it only.
func (c *Controller) View() *View { return c.view.Load() }

// Overlay returns a copy of the weights to serve (the latest snapshot's),
// which the caller may keep and change.
func (c *Controller) Overlay() Overlay { return c.view.Load().Overlay.clone() }

// Run ticks every interval until ctx ends, reading the current policy
// from mesh each time, then releases the lease.
func (c *Controller) Run(ctx context.Context, every time.Duration, mesh func() *policy.Mesh) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := c.Tick(ctx, mesh()); err != nil {
			c.cfg.Logger.Error("rollout tick failed", "err", err)
		}
		select {
		case <-ctx.Done():
			if err := c.lease.Release(); err != nil {
				c.cfg.Logger.Warn("release rollout lease", "err", err)
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// decided is an audit event waiting for the state that records it.
type decided struct {
	st *State
	v  verdict
}

// Tick runs one round against the policy m: take or renew the lease, read
// the state, and, when this replica holds the lease, start rollouts that
// are new or whose route was edited, judge those due, drop those whose
// route lost its rollout, and save. Every replica then publishes the
// overlay of the state for m.
//
// # Errors
//
// A lease, state file or audit failure; the view then keeps the previous
// overlay and reports the error.
func (c *Controller) Tick(ctx context.Context, m *policy.Mesh) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.tick(ctx, m)
	if err != nil {
		prev := *c.view.Load()
		prev.Error = err.Error()
		c.view.Store(&prev)
	}
	return err
}

func (c *Controller) tick(ctx context.Context, m *policy.Mesh) error {
	if m == nil {
		// Not "no routes": that would remove every rollout.
		return errors.New("rollout tick: no policy loaded yet")
	}
	held, holder, err := c.lease.Acquire()
	if err != nil {
		return err
	}
	states, err := loadState(c.cfg.StateDir)
	if err != nil {
		return err
	}
	var events []decided
	if held {
		events = c.decide(ctx, m, states)
		if len(events) > 0 {
			if err := saveState(c.cfg.StateDir, states); err != nil {
				return err
			}
		}
	}
	c.publish(m, states, held, holder)
	var errs []error
	for _, e := range events {
		errs = append(errs, c.record(ctx, e))
	}
	return errors.Join(errs...)
}

// decide makes this round's decisions, changing states in place.
func (c *Controller) decide(ctx context.Context, m *policy.Mesh, states map[string]*State) []decided {
	now := c.cfg.Now()
	var events []decided
	seen := map[string]bool{}
	for _, r := range m.Routes {
		ro := r.Spec.Rollout
		if ro == nil {
			continue
		}
		name := r.Metadata.Name
		seen[name] = true
		st := states[name]
		if h := specHash(&r.Spec); st == nil || st.Spec != h {
			v := verdict{decision: DecisionStart, reason: "new rollout"}
			if st != nil {
				v = verdict{decision: DecisionRestart, reason: "route edited: the rollout starts again"}
			}
			st = newState(r, h, now)
			states[name] = st
			st.LastDecision, st.LastReason, st.Updated = v.decision, v.reason, now
			events = append(events, decided{st, v})
			continue
		}
		if st.Phase != PhaseProgressing || now.Before(st.NextJudgement) {
			continue
		}
		v := c.step(ctx, r, st, now)
		events = append(events, decided{st, v})
	}
	for _, name := range sortedKeys(states) {
		if !seen[name] {
			st := states[name]
			delete(states, name)
			events = append(events, decided{st, verdict{decision: DecisionRemove, reason: "the route has no rollout any more"}})
		}
	}
	return events
}

// newState starts r's rollout at its first step.
func newState(r *policy.Route, hash string, now time.Time) *State {
	ro := r.Spec.Rollout
	st := &State{
		Route: r.Metadata.Name, Spec: hash, Version: ro.Version, Steps: slices.Clone(ro.Steps),
		Phase: PhaseProgressing, Weight: ro.Steps[0], Started: now, StepStarted: now,
		NextJudgement: now.Add(ro.StepInterval.D()),
	}
	for _, d := range r.Spec.Split {
		if d.Version != ro.Version {
			st.Service, st.Stable = d.Service, d.Version
		}
	}
	return st
}

// step judges st's current step and applies the verdict.
func (c *Controller) step(ctx context.Context, r *policy.Route, st *State, now time.Time) verdict {
	ro := r.Spec.Rollout
	crit := criteria{analysis: ro.Analysis, minRequests: ro.MinRequests, budget: policy.ErrorBudget(r.Spec.SLO)}
	m, err := c.measure(ctx, r, st, crit, now)
	var v verdict
	if err != nil {
		v = verdict{decision: DecisionHold, reason: "metric source unavailable, not promoting blind: " + err.Error(),
			numbers: map[string]string{"window": m.window.String()}}
	} else {
		v = crit.judge(m, st.Requests+m.requests, st.Errors+m.errors)
	}
	v.numbers["step"] = fmt.Sprint(st.Step)
	v.numbers["weight"] = fmt.Sprint(st.Weight)
	switch v.decision {
	case DecisionHold:
		st.NextJudgement = now.Add(ro.StepInterval.D())
	case DecisionRollback:
		st.Phase, st.Weight, st.NextJudgement = PhaseFailed, 0, time.Time{}
	case DecisionAdvance:
		st.Requests += m.requests
		st.Errors += m.errors
		if st.Step == len(st.Steps)-1 {
			v.decision = DecisionPromote
			v.reason = "the last step passed: " + v.reason
			st.Phase, st.NextJudgement = PhasePromoted, time.Time{}
			break
		}
		st.Step++
		st.Weight = st.Steps[st.Step]
		st.StepStarted, st.NextJudgement = now, now.Add(ro.StepInterval.D())
	}
	st.LastDecision, st.LastReason, st.Updated = v.decision, v.reason, now
	return v
}

// measure asks the source for the step's numbers; any failure is an error,
// so the step holds.
func (c *Controller) measure(ctx context.Context, r *policy.Route, st *State, crit criteria, now time.Time) (measurement, error) {
	m := measurement{window: now.Sub(st.StepStarted)}
	src := c.cfg.Source
	if src == nil {
		return m, fmt.Errorf("%w: no metric source configured", metricsource.ErrDown)
	}
	sig := c.cfg.Signals(r, st.Service, st.Version)
	var err error
	if m.requests, err = src.Increase(ctx, sig.Requests, m.window); err != nil {
		return m, err
	}
	if m.errors, err = src.Increase(ctx, sig.Errors, m.window); err != nil {
		return m, err
	}
	if judge, doomed := crit.enough(m); !judge || doomed {
		return m, nil // decided on counts alone
	}
	a := crit.analysis
	for _, l := range a.Latency {
		if sig.Latency.Metric == "" {
			return m, fmt.Errorf("%w: latency objectives need a latency histogram, and the signals have none", metricsource.ErrNoData)
		}
		q, err := src.Quantile(ctx, l.Percentile/100, sig.Latency, m.window)
		if err != nil {
			return m, err
		}
		m.latency = append(m.latency, time.Duration(q*float64(sig.LatencyUnit)))
	}
	if a.MinAgreement > 0 {
		if sig.Agree.Metric == "" {
			return m, fmt.Errorf("%w: minAgreement needs shadow agreement counters, and the signals have none", metricsource.ErrNoData)
		}
		if m.agree, err = src.Increase(ctx, sig.Agree, m.window); err != nil {
			return m, err
		}
		if m.disagree, err = src.Increase(ctx, sig.Disagree, m.window); err != nil {
			return m, err
		}
	}
	return m, nil
}

// publish stores the view of states for m: a rollout shows in the overlay
// only while m still has the route as the rollout started from it (a
// follower may see an edit before the leader restarts the rollout; it then
// serves the policy's own split).
func (c *Controller) publish(m *policy.Mesh, states map[string]*State, leader bool, holder string) {
	v := &View{Leader: leader, Holder: holder, Overlay: Overlay{}}
	for _, name := range sortedKeys(states) {
		st := states[name]
		v.Rollouts = append(v.Rollouts, *st)
		r := m.Route(name)
		if r == nil || r.Spec.Rollout == nil || specHash(&r.Spec) != st.Spec {
			continue
		}
		v.Overlay[name] = overlaySplit(r.Spec.Split, st)
	}
	c.view.Store(v)
}

// overlaySplit is split with st's weights: the version st.Weight, the
// stable version the rest, in the policy's order (the version appended
// when the policy's split leaves it out).
func overlaySplit(split []policy.Destination, st *State) []policy.Destination {
	out := make([]policy.Destination, 0, len(split)+1)
	found := false
	for _, d := range split {
		if d.Version == st.Version {
			d.Weight, found = st.Weight, true
		} else {
			d.Weight = 100 - st.Weight
		}
		out = append(out, d)
	}
	if !found {
		out = append(out, policy.Destination{Service: st.Service, Version: st.Version, Weight: st.Weight})
	}
	return out
}

// record writes the audit event of a decision.
func (c *Controller) record(ctx context.Context, d decided) error {
	st := d.st
	details := map[string]string{
		"route": st.Route, "service": st.Service, "stable": st.Stable, "version": st.Version,
		"phase": st.Phase, "weight_now": fmt.Sprint(st.Weight),
	}
	for k, v := range d.v.numbers {
		details[k] = v
	}
	c.cfg.Logger.Info("rollout decision", "route", st.Route, "decision", d.v.decision, "reason", d.v.reason, "weight", st.Weight)
	if c.cfg.Audit == nil {
		return nil
	}
	err := c.cfg.Audit.Record(ctx, audit.Event{
		Time: c.cfg.Now(), Kind: audit.Kind("rollout_" + d.v.decision), Reason: d.v.reason, Details: details,
	})
	if err != nil {
		return fmt.Errorf("audit rollout %s of route %s: %w", d.v.decision, st.Route, err)
	}
	return nil
}

// specHash identifies a route's spec: any edit changes it.
func specHash(sp *policy.RouteSpec) string {
	data, err := json.Marshal(sp)
	if err != nil {
		// Plain data, NaN and Inf refused by the decoder: cannot happen.
		data = []byte(err.Error())
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:12])
}

func sortedKeys(m map[string]*State) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
