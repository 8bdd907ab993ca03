// Package stats keeps the gateway's counters, gauges and histograms and
// writes them in Prometheus text the way Envoy's /stats/prometheus does:
// Envoy's stat names with their tags extracted into labels, an envoy_
// prefix for Envoy's own stats, and the wasm filters' custom stats under
// their own names (Envoy's wasmcustom namespace, which its Prometheus
// output strips).
package stats

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Label is one Prometheus label.
type Label struct{ Name, Value string }

// L builds labels from name, value pairs.
func L(kv ...string) []Label {
	out := make([]Label, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, Label{kv[i], kv[i+1]})
	}
	return out
}

// Counter is a monotonically increasing count.
type Counter struct{ v atomic.Uint64 }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Value returns the count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge is a value that goes up and down.
type Gauge struct{ v atomic.Int64 }

// Set sets the value.
func (g *Gauge) Set(v int64) { g.v.Store(v) }

// Add adds d (which may be negative).
func (g *Gauge) Add(d int64) { g.v.Add(d) }

// Value returns the value.
func (g *Gauge) Value() int64 { return g.v.Load() }

// Buckets are Envoy's default histogram bucket bounds (milliseconds for
// time histograms).
var Buckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// Histogram counts observations in Buckets.
type Histogram struct {
	counts [20]atomic.Uint64 // len(Buckets)+1, the last is +Inf
	sum    atomic.Uint64     // float64 bits
	n      atomic.Uint64
}

// Record adds one observation.
func (h *Histogram) Record(v float64) {
	i, _ := slices.BinarySearch(Buckets, v)
	h.counts[i].Add(1)
	h.n.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.n.Load() }

type kind int

const (
	kindCounter kind = iota
	kindGauge
	kindHistogram
)

type series struct {
	labels []Label
	c      *Counter
	g      *Gauge
	h      *Histogram
}

type family struct {
	kind   kind
	series map[string]*series
}

// Store holds every stat of one gateway. It is safe for concurrent use;
// callers keep the returned pointers for the hot path.
type Store struct {
	mu       sync.RWMutex
	families map[string]*family
}

// New returns an empty store.
func New() *Store { return &Store{families: make(map[string]*family)} }

// Counter returns the counter of the family name with labels, creating it.
func (s *Store) Counter(name string, labels ...Label) *Counter {
	return s.get(name, kindCounter, labels).c
}

// Gauge returns the gauge of the family name with labels, creating it.
func (s *Store) Gauge(name string, labels ...Label) *Gauge {
	return s.get(name, kindGauge, labels).g
}

// Histogram returns the histogram of the family name with labels.
func (s *Store) Histogram(name string, labels ...Label) *Histogram {
	return s.get(name, kindHistogram, labels).h
}

func labelKey(labels []Label) string {
	var b strings.Builder
	for _, l := range labels {
		b.WriteString(l.Name)
		b.WriteByte('=')
		b.WriteString(l.Value)
		b.WriteByte(0)
	}
	return b.String()
}

func (s *Store) get(name string, k kind, labels []Label) *series {
	key := labelKey(labels)
	s.mu.RLock()
	f := s.families[name]
	var sr *series
	if f != nil {
		sr = f.series[key]
	}
	s.mu.RUnlock()
	if sr != nil && f.kind == k {
		return sr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f = s.families[name]
	if f == nil {
		f = &family{kind: k, series: make(map[string]*series)}
		s.families[name] = f
	}
	if f.kind != k {
		// A name reused with another kind (a filter defining a gauge
		// and a counter with one name) gets a detached series, so the
		// exposition stays valid.
		return newSeries(k, labels)
	}
	if sr = f.series[key]; sr == nil {
		sr = newSeries(k, labels)
		f.series[key] = sr
	}
	return sr
}

func newSeries(k kind, labels []Label) *series {
	sr := &series{labels: slices.Clone(labels)}
	switch k {
	case kindCounter:
		sr.c = &Counter{}
	case kindGauge:
		sr.g = &Gauge{}
	default:
		sr.h = &Histogram{}
	}
	return sr
}

// WritePrometheus writes every stat in Prometheus text format 0.0.4,
// families and series sorted.
func (s *Store) WritePrometheus(w io.Writer) error {
	s.mu.RLock()
	names := make([]string, 0, len(s.families))
	for n := range s.families {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		f := s.families[n]
		keys := make([]string, 0, len(f.series))
		for k := range f.series {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fmt.Fprintf(&b, "# TYPE %s %s\n", n, [...]string{"counter", "gauge", "histogram"}[f.kind])
		for _, k := range keys {
			sr := f.series[k]
			switch f.kind {
			case kindCounter:
				fmt.Fprintf(&b, "%s%s %d\n", n, fmtLabels(sr.labels), sr.c.Value())
			case kindGauge:
				fmt.Fprintf(&b, "%s%s %d\n", n, fmtLabels(sr.labels), sr.g.Value())
			default:
				writeHistogram(&b, n, sr)
			}
		}
	}
	s.mu.RUnlock()
	_, err := io.WriteString(w, b.String())
	return err
}

func writeHistogram(b *strings.Builder, n string, sr *series) {
	var cum uint64
	for i, bound := range Buckets {
		cum += sr.h.counts[i].Load()
		fmt.Fprintf(b, "%s_bucket%s %d\n", n, fmtLabels(append(slices.Clone(sr.labels), Label{"le", strconv.FormatFloat(bound, 'g', -1, 64)})), cum)
	}
	cum += sr.h.counts[len(Buckets)].Load()
	fmt.Fprintf(b, "%s_bucket%s %d\n", n, fmtLabels(append(slices.Clone(sr.labels), Label{"le", "+Inf"})), cum)
	fmt.Fprintf(b, "%s_sum%s %s\n", n, fmtLabels(sr.labels), strconv.FormatFloat(math.Float64frombits(sr.h.sum.Load()), 'g', -1, 64))
	fmt.Fprintf(b, "%s_count%s %d\n", n, fmtLabels(sr.labels), cum)
}

func fmtLabels(labels []Label) string {
	if len(labels) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.Name)
		b.WriteString(`="`)
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(l.Value))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}
