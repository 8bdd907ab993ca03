package slo

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// Metric updates one stat: a counter adds v, a gauge is set to v, a
// histogram records v.
type Metric func(v uint64)

// Metrics defines stats by kind and name (proxy_define_metric).
type Metrics interface {
	Define(kind pw.MetricType, name string) (Metric, error)
}

// Store is VM-wide shared data with compare-and-swap
// (proxy_get_shared_data / proxy_set_shared_data).
type Store interface {
	// Get returns pw.ErrNotFound for a key never set.
	Get(key string) (value []byte, cas uint32, err error)
	// Set returns pw.ErrCasMismatch when cas is stale; cas 0 always writes.
	Set(key string, value []byte, cas uint32) error
}

// Env is what a Meter needs from its host.
type Env struct {
	Metrics Metrics
	Store   Store
	Log     func(level pw.LogLevel, msg string)
}

// Observation is one finished request.
type Observation struct {
	Route, Model string
	Status       int // HTTP status; 0 when no response was sent
	GRPCStatus   int // NoGRPCStatus when absent
	Latency      time.Duration
	End          time.Time // when the response finished
}

// maxSeries bounds the series a Meter creates: models come from requests,
// and a client must not be able to grow Envoy's stats without limit.
// Further models of an objective share the series tagged "other".
const maxSeries = 256

// casAttempts bounds one flush's compare-and-swap retries per series.
const casAttempts = 8

// Meter meters requests against the objectives of one configuration. It is
// used from one VM (one worker thread) and is not safe for concurrent use;
// workers share state only through the Store.
type Meter struct {
	cfg    *filterconfig.SLO
	env    Env
	series map[seriesKey]*series
	order  []*series // creation order, for deterministic flushes
	// last is the series found last: requests mostly repeat their
	// predecessor's route and model, and comparing two strings costs far
	// less in wasm than hashing them for the map.
	last *series
}

type seriesKey struct {
	obj          *filterconfig.SLOObjective
	route, model string
}

type series struct {
	obj          *filterconfig.SLOObjective
	route, model string
	key          string // shared data key
	width        int64  // bucket width, seconds
	requests     Metric
	errors       Metric
	latency      Metric
	slow         []Metric
	burn         [2]Metric // short, long (errors SLI), x1000
	pending      Record    // counts since the last flush
	budget       string    // 1 - long-window error burn, as of the last flush
	slowScratch  []uint64  // one per latency target, reused by Observe
}

// NewMeter returns a Meter for cfg (already validated).
func NewMeter(cfg *filterconfig.SLO, env Env) *Meter {
	if env.Log == nil {
		env.Log = func(pw.LogLevel, string) {}
	}
	return &Meter{cfg: cfg, env: env, series: map[seriesKey]*series{}}
}

// seriesFor returns (creating and defining its stats on first use) the
// series of an objective for a route and model.
func (m *Meter) seriesFor(obj *filterconfig.SLOObjective, route, model string) (*series, error) {
	if s := m.lookup(obj, route, model); s != nil {
		return s, nil
	}
	k := seriesKey{obj, route, model}
	if len(m.series) >= maxSeries {
		k.model = "other"
		if s, ok := m.series[k]; ok {
			return s, nil
		}
	}
	// A series lives as long as the plugin: its names are copied, since
	// a request's may point into a buffer shared with other host values.
	k.route, k.model = strings.Clone(k.route), strings.Clone(k.model)
	s := &series{obj: obj, route: k.route, model: k.model, slowScratch: make([]uint64, len(obj.Latency)),
		key:   "maestro_slo\x00" + k.route + "\x00" + k.model,
		width: int64(obj.BucketSeconds())}
	var errs []error
	def := func(kind pw.MetricType, name string) Metric {
		f, err := m.env.Metrics.Define(kind, name)
		if err != nil {
			errs = append(errs, err)
			return func(uint64) {}
		}
		return f
	}
	s.requests = def(pw.MetricTypeCounter, StatName("requests_total", k.route, k.model))
	s.errors = def(pw.MetricTypeCounter, StatName("errors_total", k.route, k.model))
	s.latency = def(pw.MetricTypeHistogram, StatName("latency_ms", k.route, k.model))
	for _, t := range obj.Latency {
		s.slow = append(s.slow, def(pw.MetricTypeCounter,
			StatName("slow_requests_total", k.route, k.model, targetTag(t.Percentile, t.ThresholdMs))))
	}
	s.burn[0] = def(pw.MetricTypeGauge, StatName("burn_rate_x1000", k.route, k.model, "window.short"))
	s.burn[1] = def(pw.MetricTypeGauge, StatName("burn_rate_x1000", k.route, k.model, "window.long"))
	if len(errs) > 0 {
		return nil, fmt.Errorf("define slo stats for route %q model %q: %w", route, model, errors.Join(errs...))
	}
	m.series[k] = s
	m.order = append(m.order, s)
	return s, nil
}

// lookup returns the existing series of an objective for a route and
// model, or nil.
func (m *Meter) lookup(obj *filterconfig.SLOObjective, route, model string) *series {
	if s := m.last; s != nil && s.obj == obj && s.route == route && s.model == model {
		return s
	}
	s := m.series[seriesKey{obj, route, model}]
	if s != nil {
		m.last = s
	}
	return s
}

// Observe meters one finished request. Requests no objective matches are
// ignored.
//
// # Errors
// The host refused to define the series' stats.
func (m *Meter) Observe(o Observation) error {
	obj := m.cfg.Match(o.Route, o.Model)
	if obj == nil {
		return nil
	}
	s, err := m.seriesFor(obj, o.Route, o.Model)
	if err != nil {
		return err
	}
	b := Bucket{Index: o.End.Unix() / s.width, Total: 1}
	s.requests(1)
	if IsError(o.Status, o.GRPCStatus) {
		s.errors(1)
		b.Errors = 1
	}
	ms := uint64(max(o.Latency, 0) / time.Millisecond)
	s.latency(ms)
	if len(obj.Latency) > 0 {
		// Add copies the counts: one scratch slice per series serves
		// every request.
		b.Slow = s.slowScratch[:len(obj.Latency)]
		clear(b.Slow)
		for i, t := range obj.Latency {
			if ms > uint64(t.ThresholdMs) {
				b.Slow[i] = 1
				s.slow[i](1)
			}
		}
	}
	s.pending.Add(b)
	return nil
}

// BudgetHeader returns the response header and value announcing the
// remaining error budget for a route and model, as of the last flush;
// ok is false when the objective has no BudgetHeader.
func (m *Meter) BudgetHeader(route, model string) (name, value string, ok bool) {
	obj := m.cfg.Match(route, model)
	if obj == nil || obj.BudgetHeader == "" {
		return "", "", false
	}
	if s := m.lookup(obj, route, model); s != nil && s.budget != "" {
		return obj.BudgetHeader, s.budget, true
	}
	return obj.BudgetHeader, fullBudget, true
}

// Flush merges every series' pending counts into the shared record with
// compare-and-swap, recomputes the burn rates at now, and logs each
// threshold crossing once across all workers (the worker whose swap flips
// the alert bit logs it).
//
// # Errors
// Shared data stayed contended for casAttempts tries, or failed.
func (m *Meter) Flush(now time.Time) error {
	var errs []error
	for _, s := range m.order {
		if err := m.flush(s, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Meter) flush(s *series, now time.Time) error {
	for attempt := 0; attempt < casAttempts; attempt++ {
		value, cas, err := m.env.Store.Get(s.key)
		switch {
		case errors.Is(err, pw.ErrNotFound):
			// Create the key first so that every merge below is a real
			// compare-and-swap: a write with cas 0 is unconditional.
			empty, _ := (&Record{}).MarshalBinary()
			if err := m.env.Store.Set(s.key, empty, 0); err != nil {
				return fmt.Errorf("create slo record for route %q model %q: %w", s.route, s.model, err)
			}
			continue
		case err != nil:
			return fmt.Errorf("read slo record for route %q model %q: %w", s.route, s.model, err)
		}
		var rec Record
		if err := rec.UnmarshalBinary(value); err != nil {
			m.env.Log(pw.LogLevelWarn, fmt.Sprintf("slo: resetting shared record of route %q model %q: %v", s.route, s.model, err))
			rec = Record{}
		}
		for _, b := range s.pending.Buckets {
			rec.Add(b)
		}
		nowIdx := now.Unix() / s.width
		longN := int64(s.obj.EffectiveLongWindowSeconds()) / s.width
		rec.Trim(nowIdx - longN + 1)
		ev := evaluate(s.obj, &rec, nowIdx, s.width)
		prev := rec.Alerting
		rec.Alerting = ev.alerting
		out, _ := rec.MarshalBinary()
		err = m.env.Store.Set(s.key, out, cas)
		if errors.Is(err, pw.ErrCasMismatch) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write slo record for route %q model %q: %w", s.route, s.model, err)
		}
		s.pending = Record{}
		// Formatted once per flush: float formatting is slow inside wasm and
		// the header goes on every response.
		s.budget = formatBudget(1 - ev.errBurn[1])
		s.burn[0](uint64(ev.errBurn[0]*1000 + 0.5))
		s.burn[1](uint64(ev.errBurn[1]*1000 + 0.5))
		m.logCrossings(s, ev, prev)
		return nil
	}
	return fmt.Errorf("slo record for route %q model %q: still contended after %d attempts", s.route, s.model, casAttempts)
}

// evaluation is the state of every SLI of one series at one instant.
type evaluation struct {
	errBurn  [2]float64 // short, long
	windows  [2]Bucket
	slowBurn [][2]float64
	alerting uint64
}

func evaluate(obj *filterconfig.SLOObjective, rec *Record, nowIdx, width int64) evaluation {
	var ev evaluation
	n := len(obj.Latency)
	spans := [2]int64{int64(obj.EffectiveShortWindowSeconds()) / width, int64(obj.EffectiveLongWindowSeconds()) / width}
	thresholds := [2]float64{obj.EffectiveShortBurnThreshold(), obj.EffectiveLongBurnThreshold()}
	ev.slowBurn = make([][2]float64, n)
	for w := 0; w < 2; w++ {
		sum := rec.Sum(nowIdx-spans[w]+1, nowIdx, n)
		ev.windows[w] = sum
		if sum.Total == 0 {
			continue
		}
		ev.errBurn[w] = float64(sum.Errors) / float64(sum.Total) / obj.ErrorBudget()
		if ev.errBurn[w] >= thresholds[w] {
			ev.alerting |= alertBit(0, w == 1)
		}
		for i, t := range obj.Latency {
			ev.slowBurn[i][w] = float64(sum.Slow[i]) / float64(sum.Total) / (1 - t.Percentile/100)
			if ev.slowBurn[i][w] >= thresholds[w] {
				ev.alerting |= alertBit(1+i, w == 1)
			}
		}
	}
	return ev
}

func (m *Meter) logCrossings(s *series, ev evaluation, prev uint64) {
	names := [2]string{"short", "long"}
	spans := [2]uint32{s.obj.EffectiveShortWindowSeconds(), s.obj.EffectiveLongWindowSeconds()}
	thresholds := [2]float64{s.obj.EffectiveShortBurnThreshold(), s.obj.EffectiveLongBurnThreshold()}
	for sli := 0; sli <= len(s.obj.Latency); sli++ {
		for w := 0; w < 2; w++ {
			bit := alertBit(sli, w == 1)
			was, is := prev&bit != 0, ev.alerting&bit != 0
			if was == is {
				continue
			}
			name, burn, bad := "errors", ev.errBurn[w], ev.windows[w].Errors
			if sli > 0 {
				t := s.obj.Latency[sli-1]
				name = fmt.Sprintf("latency p%v<%dms", t.Percentile, t.ThresholdMs)
				burn, bad = ev.slowBurn[sli-1][w], ev.windows[w].Slow[sli-1]
			}
			msg := fmt.Sprintf("route=%q model=%q sli=%q window=%s(%v) burn_rate=%.2f threshold=%.2f bad=%d total=%d",
				s.route, s.model, name, names[w], time.Duration(spans[w])*time.Second, burn, thresholds[w], bad, ev.windows[w].Total)
			if is {
				m.env.Log(pw.LogLevelWarn, "slo burn rate above threshold: "+msg)
			} else {
				m.env.Log(pw.LogLevelInfo, "slo burn rate back under threshold: "+msg)
			}
		}
	}
}

// fullBudget is formatBudget(1), the answer before the first flush.
const fullBudget = "1.0000"

func formatBudget(left float64) string {
	left = math.Round(left*1e4) / 1e4
	if left == 0 {
		left = 0 // no "-0.0000"
	}
	return strconv.FormatFloat(left, 'f', 4, 64)
}
