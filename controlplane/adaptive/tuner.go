// Package adaptive sets the weights of adaptive ensembles (ensemble.weights:
// adaptive) from each member's measured quality. Quality is accuracy
// against the true values the application sends back (Label, by request
// id), or, for a member with too few labels in an interval, agreement with
// the ensemble's own answer; either is multiplied by the share of requests
// the member answered (timeouts and errors count against it). Each
// interval the quality is smoothed (an exponentially weighted moving
// average) and mapped linearly onto the route's weight bounds: a member no
// better than chance gets the minimum weight, the best member the maximum.
// Every change is an audit event with the numbers behind it.
//
// The weights are an Overlay on the policy, as rollouts' are; they are not
// persisted (a restart learns them again from the policy's weights).
package adaptive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// Auditor records weight changes; *audit.Log is one.
type Auditor interface {
	Record(ctx context.Context, ev audit.Event) error
}

// EventWeight is the audit kind of a weight change.
const EventWeight = audit.Kind("ensemble_weight")

// Outcome is how a member's call ended.
type Outcome int

// Outcomes of a member call.
const (
	Answered Outcome = iota
	TimedOut
	Failed
)

// Answer is one member's part in one request.
type Answer struct {
	Member  string // MemberName of the member
	Outcome Outcome
	// Value is the member's answer when Answered: a class (compared
	// exactly) or a number (compared within Config.Tolerance).
	Value float64
}

// MemberName names an ensemble member in Answers, the view and audit
// events: its cluster and model, e.g. "fraud.v1/fraud", as the fanout
// filter names it in the observations it posts (model.MemberName).
func MemberName(m policy.Member) string {
	return model.MemberName(m.Service, m.Version, m.Model)
}

// Config configures a Tuner.
type Config struct {
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Audit records weight changes; nil records none.
	Audit  Auditor
	Logger *slog.Logger
	// Store bounds the answers kept for labels.
	Store StoreConfig
	// Chance is the quality of a member no better than guessing: it and
	// anything below get the minimum weight. Default 0.5 (two classes).
	Chance float64
	// MinEvidence is the labels (or, failing those, comparisons with the
	// ensemble) a member needs in an interval for its accuracy (or
	// agreement) to count; default 10.
	MinEvidence int
	// Tolerance is how far a numeric answer may be from the truth or the
	// ensemble's answer and still count as right; 0 compares classes.
	Tolerance float64
}

// Tuner measures members and sets weights. It is safe for concurrent use;
// Observe and Label are cheap and may be called on every request.
type Tuner struct {
	cfg   Config
	store *store

	mu     sync.Mutex
	routes map[string]*routeState
	view   atomic.Pointer[View]
}

// routeState is one adaptive ensemble.
type routeState struct {
	spec      string // hash of the ensemble as the policy gives it
	members   []string
	index     map[string]int
	weights   []float64
	quality   []float64 // smoothed; NaN until first measured
	counts    []counts  // this interval's
	next      time.Time
	evaluated int
}

// counts are one member's numbers over an interval.
type counts struct {
	requests, timeouts, failures int
	labelled, correct            int
	compared, agreed             int
	// counted are the requests known only by count (ObserveCounts).
	counted int
}

// MemberStatus is one member as the view shows it.
type MemberStatus struct {
	Member  string  `json:"member"`
	Weight  float64 `json:"weight"`
	Quality float64 `json:"quality"` // smoothed; -1 before any measurement
}

// View is a snapshot for status pages.
type View struct {
	Overlay Overlay                   `json:"overlay"`
	Routes  map[string][]MemberStatus `json:"routes"`
}

// New returns a Tuner.
func New(cfg Config) *Tuner {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Chance <= 0 || cfg.Chance >= 1 {
		cfg.Chance = 0.5
	}
	if cfg.MinEvidence <= 0 {
		cfg.MinEvidence = 10
	}
	t := &Tuner{cfg: cfg, store: newStore(cfg.Store), routes: map[string]*routeState{}}
	t.view.Store(&View{Overlay: Overlay{}, Routes: map[string][]MemberStatus{}})
	return t
}

// View returns the latest snapshot; it is shared, so read it only.
func (t *Tuner) View() *View { return t.view.Load() }

// Overlay returns a copy of the weights to serve, which the caller may
// keep and change.
func (t *Tuner) Overlay() Overlay {
	o := t.view.Load().Overlay
	c := make(Overlay, len(o))
	for k, v := range o {
		c[k] = slices.Clone(v)
	}
	return c
}

// Observe records one request of an adaptive route: each member's outcome
// and answer, and the ensemble's combined answer (NaN when the ensemble
// gave none, e.g. for want of a quorum: then agreement is not counted). The answers are kept
// under requestID (when not empty) for a Label. Requests of routes the
// Tuner does not track (not adaptive, or before the first Evaluate) and
// unknown members are ignored.
func (t *Tuner) Observe(route, requestID string, answers []Answer, ensemble float64) {
	now := t.cfg.Now()
	t.mu.Lock()
	rs := t.routes[route]
	if rs != nil {
		for _, a := range answers {
			i, ok := rs.index[a.Member]
			if !ok {
				continue
			}
			c := &rs.counts[i]
			c.requests++
			switch a.Outcome {
			case TimedOut:
				c.timeouts++
			case Failed:
				c.failures++
			default:
				if !math.IsNaN(ensemble) {
					c.compared++
					if t.same(a.Value, ensemble) {
						c.agreed++
					}
				}
			}
		}
	}
	t.mu.Unlock()
	if rs != nil && requestID != "" {
		t.store.put(&entry{id: requestID, route: route, at: now, answers: slices.Clone(answers)})
	}
}

// Label is the application's true value for a request Observe recorded:
// each member that answered is scored right or wrong.
//
// # Errors
//
// ErrUnknownRequest (wrapped) when the request is not held: never
// observed, labelled already, or dropped for age or space (StoreConfig);
// an error naming the value when truth is not a finite number.
func (t *Tuner) Label(requestID string, truth float64) error {
	if math.IsNaN(truth) || math.IsInf(truth, 0) {
		return fmt.Errorf("label %q: the true value %v is not a finite number", requestID, truth)
	}
	e, ok := t.store.take(requestID, t.cfg.Now())
	if !ok {
		return fmt.Errorf("label %q: %w", requestID, ErrUnknownRequest)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	rs := t.routes[e.route]
	if rs == nil {
		return nil // the route stopped being adaptive meanwhile
	}
	for _, a := range e.answers {
		i, ok := rs.index[a.Member]
		if !ok || a.Outcome != Answered {
			continue
		}
		rs.counts[i].labelled++
		if t.same(a.Value, truth) {
			rs.counts[i].correct++
		}
	}
	return nil
}

func (t *Tuner) same(a, b float64) bool { return math.Abs(a-b) <= t.cfg.Tolerance }

// Evaluate follows the policy m (tracking new adaptive ensembles, starting
// again from the policy's weights any whose ensemble was edited, dropping
// the others) and re-weights every ensemble whose interval has passed.
//
// # Errors
//
// Audit failures, joined; the weights change all the same. A nil m is an
// error and changes nothing.
func (t *Tuner) Evaluate(ctx context.Context, m *policy.Mesh) error {
	if m == nil {
		// Not "no routes": that would forget every ensemble's weights.
		return errors.New("evaluate ensemble weights: no policy loaded yet")
	}
	now := t.cfg.Now()
	var events []audit.Event
	t.mu.Lock()
	seen := map[string]bool{}
	for _, r := range m.Routes {
		e := r.Spec.Ensemble
		if e == nil || e.Weights != policy.WeightsAdaptive || e.Adaptive == nil {
			continue
		}
		name := r.Metadata.Name
		seen[name] = true
		h := ensembleHash(e)
		rs := t.routes[name]
		if rs == nil || rs.spec != h {
			t.routes[name] = newRouteState(e, h, now)
			continue
		}
		if now.Before(rs.next) {
			continue
		}
		events = append(events, t.reweigh(name, rs, e.Adaptive, now)...)
		rs.next = now.Add(e.Adaptive.Interval.D())
	}
	for name := range t.routes {
		if !seen[name] {
			delete(t.routes, name)
		}
	}
	t.publish()
	t.mu.Unlock()
	var errs []error
	if t.cfg.Audit != nil {
		for _, ev := range events {
			if err := t.cfg.Audit.Record(ctx, ev); err != nil {
				errs = append(errs, fmt.Errorf("audit weight of %s: %w", ev.Details["member"], err))
			}
		}
	}
	return errors.Join(errs...)
}

func newRouteState(e *policy.Ensemble, hash string, now time.Time) *routeState {
	rs := &routeState{spec: hash, index: map[string]int{}, next: now.Add(e.Adaptive.Interval.D())}
	for i, mem := range e.Members {
		name := MemberName(mem)
		rs.members = append(rs.members, name)
		rs.index[name] = i
		rs.weights = append(rs.weights, mem.Weight)
		rs.quality = append(rs.quality, math.NaN())
	}
	rs.counts = make([]counts, len(e.Members))
	return rs
}

// reweigh measures each member over the interval, smooths, maps the
// qualities onto the bounds, and returns an event per changed weight.
func (t *Tuner) reweigh(route string, rs *routeState, a *policy.Adaptive, now time.Time) []audit.Event {
	rs.evaluated++
	basis := make([]string, len(rs.members))
	measured := make([]float64, len(rs.members))
	for i := range rs.members {
		q, b := t.measure(rs.counts[i], rs.quality[i])
		measured[i], basis[i] = q, b
		if math.IsNaN(q) {
			continue // no evidence: the smoothed quality stands
		}
		if math.IsNaN(rs.quality[i]) {
			rs.quality[i] = q
		} else {
			rs.quality[i] = a.Smoothing*q + (1-a.Smoothing)*rs.quality[i]
		}
	}
	best := math.Inf(-1)
	for _, q := range rs.quality {
		if !math.IsNaN(q) {
			best = max(best, q)
		}
	}
	var events []audit.Event
	for i, q := range rs.quality {
		if math.IsNaN(q) || best <= t.cfg.Chance {
			continue // nothing tells the members apart yet
		}
		f := math.Min(1, math.Max(0, (q-t.cfg.Chance)/(best-t.cfg.Chance)))
		w := a.MinWeight + (a.MaxWeight-a.MinWeight)*f
		w = math.Min(a.MaxWeight, math.Max(a.MinWeight, w))
		old := rs.weights[i]
		rs.weights[i] = w
		if math.Abs(w-old) < 1e-9 {
			continue
		}
		c := rs.counts[i]
		events = append(events, audit.Event{
			Time: now, Kind: EventWeight,
			Reason: fmt.Sprintf("quality %s (%s) against the best member's %s", f4(q), basis[i], f4(best)),
			Details: map[string]string{
				"route": route, "member": rs.members[i],
				"weight_before": f4(old), "weight_after": f4(w),
				"quality_smoothed": f4(q), "quality_measured": f4(measured[i]), "basis": basis[i],
				"requests": strconv.Itoa(c.requests), "timeouts": strconv.Itoa(c.timeouts), "failures": strconv.Itoa(c.failures),
				"labelled": strconv.Itoa(c.labelled), "correct": strconv.Itoa(c.correct),
				"compared": strconv.Itoa(c.compared), "agreed": strconv.Itoa(c.agreed), "counted": strconv.Itoa(c.counted),
				"min_weight": f4(a.MinWeight), "max_weight": f4(a.MaxWeight), "smoothing": f4(a.Smoothing),
			},
		})
		t.cfg.Logger.Info("ensemble weight", "route", route, "member", rs.members[i], "from", old, "to", w, "basis", basis[i])
	}
	clear(rs.counts)
	return events
}

// measure is a member's quality over one interval and what it rests on:
// accuracy with enough labels, else agreement with enough comparisons,
// else the previous smoothed quality; times the share of calls answered.
// NaN when the interval says nothing about the member.
func (t *Tuner) measure(c counts, prev float64) (float64, string) {
	answered := 1.0
	if c.requests > 0 {
		answered = 1 - float64(c.timeouts+c.failures)/float64(c.requests)
	}
	switch {
	case c.labelled >= t.cfg.MinEvidence:
		return float64(c.correct) / float64(c.labelled) * answered, "accuracy"
	case c.compared >= t.cfg.MinEvidence:
		return float64(c.agreed) / float64(c.compared) * answered, "agreement"
	case c.counted > 0:
		// The data plane's counters: the share answered is all they
		// measure (see ObserveCounts).
		return answered, "answered share"
	case c.requests > 0 && answered < 1:
		// Too few answers to judge them, but the failures are evidence:
		// scale what was known (a member never measured counts as good).
		base := prev
		if math.IsNaN(base) {
			base = 1
		}
		return base * answered, "answered share"
	}
	return math.NaN(), "no evidence"
}

// publish stores the view; t.mu is held.
func (t *Tuner) publish() {
	v := &View{Overlay: Overlay{}, Routes: map[string][]MemberStatus{}}
	for name, rs := range t.routes {
		v.Overlay[name] = slices.Clone(rs.weights)
		ms := make([]MemberStatus, len(rs.members))
		for i := range rs.members {
			q := rs.quality[i]
			if math.IsNaN(q) {
				q = -1
			}
			ms[i] = MemberStatus{Member: rs.members[i], Weight: rs.weights[i], Quality: q}
		}
		v.Routes[name] = ms
	}
	t.view.Store(v)
}

// ensembleHash identifies an ensemble as written: an edit restarts its
// weights from the policy's.
func ensembleHash(e *policy.Ensemble) string {
	data, err := json.Marshal(e)
	if err != nil {
		data = []byte(err.Error()) // plain data: cannot happen
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:12])
}

func f4(f float64) string { return strconv.FormatFloat(math.Round(f*1e4)/1e4, 'g', -1, 64) }
