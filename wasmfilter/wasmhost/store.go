package wasmhost

import (
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// MaxSamples bounds the histogram samples a Metric keeps: a long-running
// host records a sample per request, and Envoy keeps aggregated buckets,
// not samples. Beyond it the oldest half is dropped.
const MaxSamples = 1 << 14

// Metric is one host stat as a VM defined and updated it.
type Metric struct {
	Name  string
	Type  proxywasm.MetricType
	Value uint64 // counter or gauge value
	// Samples are the most recent histogram samples, in recording order:
	// at most MaxSamples of them. Recorded counts every sample ever.
	Samples  []uint64
	Recorded uint64
}

// Stats is the host's stat store. Several VMs given the same Stats share
// their metrics by name, as Envoy's worker threads do.
type Stats struct {
	mu       sync.Mutex
	metrics  map[string]*Metric
	onSample func(name string, v uint64)
}

// NewStats returns an empty store.
func NewStats() *Stats { return &Stats{metrics: map[string]*Metric{}} }

// NewStatsFunc returns an empty store that also hands every histogram
// sample to onSample as it is recorded, so that an exporter aggregates all
// of them while the store keeps only the last MaxSamples. onSample runs
// with the store locked: it must not call the store.
func NewStatsFunc(onSample func(name string, v uint64)) *Stats {
	return &Stats{metrics: map[string]*Metric{}, onSample: onSample}
}

func (s *Stats) define(t proxywasm.MetricType, name string) (*Metric, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.metrics[name]; ok {
		if m.Type != t {
			return nil, fmt.Errorf("metric %q is a %s, redefined as a %s", name, m.Type, t)
		}
		return m, nil
	}
	m := &Metric{Name: name, Type: t}
	s.metrics[name] = m
	return m, nil
}

func (s *Stats) increment(m *Metric, delta int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch m.Type {
	case proxywasm.MetricTypeCounter:
		// Envoy's incrementMetric refuses a counter increment that is not
		// positive, zero included.
		if delta <= 0 {
			return proxywasm.ErrBadArgument
		}
		m.Value += uint64(delta)
	case proxywasm.MetricTypeGauge:
		m.Value = uint64(int64(m.Value) + delta)
	default:
		return proxywasm.ErrBadArgument
	}
	return nil
}

// record follows Envoy's recordMetric: a counter adds v, a gauge is set to
// v, a histogram records the sample.
func (s *Stats) record(m *Metric, v uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch m.Type {
	case proxywasm.MetricTypeHistogram:
		if len(m.Samples) >= MaxSamples {
			// Dropping half at once keeps recording amortised O(1).
			m.Samples = append(m.Samples[:0], m.Samples[len(m.Samples)-MaxSamples/2:]...)
		}
		m.Samples = append(m.Samples, v)
		m.Recorded++
		if s.onSample != nil {
			s.onSample(m.Name, v)
		}
	case proxywasm.MetricTypeCounter:
		m.Value += v
	default:
		m.Value = v
	}
	return nil
}

func (s *Stats) value(m *Metric) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return m.Value
}

// Get returns a copy of the metric called name.
func (s *Stats) Get(name string) (Metric, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.metrics[name]
	if !ok {
		return Metric{}, false
	}
	c := *m
	c.Samples = slices.Clone(m.Samples)
	return c, true
}

// Value is a counter's or gauge's value, 0 when undefined.
func (s *Stats) Value(name string) uint64 {
	m, _ := s.Get(name)
	return m.Value
}

// Samples is a histogram's most recent samples (at most MaxSamples), nil
// when undefined.
func (s *Stats) Samples(name string) []uint64 {
	m, _ := s.Get(name)
	return m.Samples
}

// Names lists every defined metric, sorted.
func (s *Stats) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.metrics))
	for n := range s.metrics {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// SharedData is the host's key-value store for proxy_get_shared_data and
// proxy_set_shared_data, with Envoy's compare-and-swap rules. Give several
// VMs the same SharedData to emulate one VM id across worker threads.
type SharedData struct {
	mu      sync.Mutex
	entries map[string]sharedEntry
	lastCas uint32
}

type sharedEntry struct {
	value []byte
	cas   uint32
}

// NewSharedData returns an empty store.
func NewSharedData() *SharedData { return &SharedData{entries: map[string]sharedEntry{}} }

// Get returns a copy of the value and its CAS token.
func (d *SharedData) Get(key string) (value []byte, cas uint32, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.entries[key]
	return slices.Clone(e.value), e.cas, ok
}

// Set stores value under key. A cas of 0 always writes; otherwise the
// stored token must still equal cas.
//
// # Errors
// proxywasm.ErrCasMismatch when the value changed since cas was read.
func (d *SharedData) Set(key string, value []byte, cas uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.entries[key]; ok && cas != 0 && cas != e.cas {
		return proxywasm.ErrCasMismatch
	}
	d.lastCas++
	if d.lastCas == 0 {
		d.lastCas = 1
	}
	d.entries[key] = sharedEntry{value: slices.Clone(value), cas: d.lastCas}
	return nil
}

// LogEntry is one proxy_log call.
type LogEntry struct {
	Level     proxywasm.LogLevel
	Message   string
	ContextID uint32
}
