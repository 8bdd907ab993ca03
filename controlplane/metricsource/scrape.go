package metricsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"
)

// Target is one Prometheus text endpoint of the data plane.
type Target struct {
	// Name identifies the target in errors (e.g. "gateway-edge" or
	// "inference fraud.v2 10.0.0.5:8000").
	Name string
	URL  string // e.g. http://127.0.0.1:15000/stats/prometheus
}

// ScraperConfig configures a Scraper.
type ScraperConfig struct {
	Targets []Target
	// Client makes the requests; nil uses a client with Timeout.
	Client *http.Client
	// Timeout bounds one target's scrape; default 5s.
	Timeout time.Duration
	// Now is the clock scrapes are stamped with; nil is time.Now.
	Now func() time.Time
	// Retention is how long scrapes are kept, which bounds the longest
	// window answered exactly (longer ones use the oldest scrape); default
	// 1h. MaxScrapes bounds their number too; default 720 (1h of 5s
	// scrapes). Memory is about MaxScrapes x series scraped.
	Retention  time.Duration
	MaxScrapes int
	// MaxBody bounds one response; default 16 MiB.
	MaxBody int64
}

// Scraper keeps successive scrapes of the targets and answers Source
// queries from the differences between them. It is safe for concurrent
// use.
type Scraper struct {
	cfg ScraperConfig

	mu      sync.Mutex
	targets []Target
	scrapes []scrape // oldest first
}

// scrape is what one Scrape call saw.
type scrape struct {
	at time.Time
	// targets maps a target name to its series, or to nil with err set.
	targets map[string]*targetScrape
}

type targetScrape struct {
	series []series
	err    error
}

// series is one sample: a metric name, its labels and value.
type series struct {
	name   string
	labels map[string]string
	value  float64
}

// NewScraper returns a Scraper of cfg.Targets; it scrapes nothing until
// Scrape or Run.
func NewScraper(cfg ScraperConfig) *Scraper {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Retention <= 0 {
		cfg.Retention = time.Hour
	}
	if cfg.MaxScrapes <= 0 {
		cfg.MaxScrapes = 720
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 16 << 20
	}
	return &Scraper{cfg: cfg, targets: slices.Clone(cfg.Targets)}
}

// SetTargets replaces the targets (the data plane's endpoints change with
// the policy); scrapes already taken are kept.
func (s *Scraper) SetTargets(ts []Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.targets = slices.Clone(ts)
}

// Run scrapes every interval until ctx is done. Failed targets are
// recorded, not fatal: queries then report them as down.
func (s *Scraper) Run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		_ = s.Scrape(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Scrape reads every target once, side by side, and records the result
// stamped with the clock's time.
//
// # Errors
//
// The failed targets, joined, each wrapping ErrDown; the scrape is
// recorded all the same.
func (s *Scraper) Scrape(ctx context.Context) error {
	s.mu.Lock()
	targets := slices.Clone(s.targets)
	s.mu.Unlock()
	results := make([]*targetScrape, len(targets))
	g, gctx := errgroup.WithContext(ctx)
	for i, t := range targets {
		g.Go(func() error {
			ser, err := s.fetch(gctx, t)
			if err != nil {
				err = fmt.Errorf("scrape %s (%s): %w: %w", t.Name, t.URL, ErrDown, err)
			}
			results[i] = &targetScrape{series: ser, err: err}
			return nil // one target's failure must not cancel the others
		})
	}
	_ = g.Wait()
	sc := scrape{at: s.cfg.Now(), targets: make(map[string]*targetScrape, len(targets))}
	var errs []error
	for i, t := range targets {
		sc.targets[t.Name] = results[i]
		errs = append(errs, results[i].err)
	}
	s.mu.Lock()
	s.scrapes = append(s.scrapes, sc)
	s.trim(sc.at)
	s.mu.Unlock()
	return errors.Join(errs...)
}

// trim drops scrapes beyond the retention, keeping one older than it so a
// window of exactly the retention still has a base.
func (s *Scraper) trim(now time.Time) {
	cut := 0
	for cut+1 < len(s.scrapes) && !s.scrapes[cut+1].at.After(now.Add(-s.cfg.Retention)) {
		cut++
	}
	if extra := len(s.scrapes) - cut - s.cfg.MaxScrapes; extra > 0 {
		cut += extra
	}
	if cut > 0 {
		s.scrapes = slices.Delete(s.scrapes, 0, cut)
	}
}

func (s *Scraper) fetch(ctx context.Context, t Target) ([]series, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return nil, err
	}
	// The text format: Envoy and client_golang both serve it.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	body := io.LimitReader(resp.Body, s.cfg.MaxBody+1)
	p := expfmt.NewTextParser(model.UTF8Validation)
	counted := &countingReader{r: body}
	fams, err := p.TextToMetricFamilies(counted)
	if counted.n > s.cfg.MaxBody {
		return nil, fmt.Errorf("response larger than %d bytes", s.cfg.MaxBody)
	}
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return flatten(fams), nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// flatten turns metric families back into series as Prometheus stores
// them: a histogram h becomes h_bucket{le}, h_count and h_sum.
func flatten(fams map[string]*dto.MetricFamily) []series {
	var out []series
	for name, f := range fams {
		name = wasmName(name)
		for _, m := range f.GetMetric() {
			labels := make(map[string]string, len(m.GetLabel())+1)
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				out = append(out, series{name, labels, m.GetCounter().GetValue()})
			case m.Gauge != nil:
				out = append(out, series{name, labels, m.GetGauge().GetValue()})
			case m.Untyped != nil:
				out = append(out, series{name, labels, m.GetUntyped().GetValue()})
			case m.Histogram != nil:
				h := m.GetHistogram()
				inf := false
				for _, b := range h.GetBucket() {
					inf = inf || math.IsInf(b.GetUpperBound(), 1)
					out = append(out, series{name + "_bucket", withLabel(labels, "le", formatLE(b.GetUpperBound())), float64(b.GetCumulativeCount())})
				}
				if !inf {
					out = append(out, series{name + "_bucket", withLabel(labels, "le", "+Inf"), float64(h.GetSampleCount())})
				}
				out = append(out, series{name + "_count", labels, float64(h.GetSampleCount())}, series{name + "_sum", labels, h.GetSampleSum()})
			}
		}
	}
	return out
}

// wasmName undoes the envoy_wasmcustom_ prefix older Envoys put before
// the filters' stats, as the relabelling in docs/metrics.md does for a
// Prometheus, so one selector reads both.
func wasmName(name string) string {
	if rest, ok := strings.CutPrefix(name, "envoy_wasmcustom_"); ok &&
		(strings.HasPrefix(rest, "maestro_slo_") || strings.HasPrefix(rest, "maestro_fanout_")) {
		return rest
	}
	return name
}

func withLabel(labels map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(labels)+1)
	for a, b := range labels {
		out[a] = b
	}
	out[k] = v
	return out
}

func formatLE(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// key identifies a series within a target.
func key(name string, labels map[string]string) string {
	ks := make([]string, 0, len(labels))
	for k := range labels {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	var b strings.Builder
	b.WriteString(name)
	for _, k := range ks {
		b.WriteString("\xff" + k + "\xfe" + labels[k])
	}
	return b.String()
}

// increases returns, for every series sel matches, how much it grew within
// window: per target, between the newest scrape and the newest one at or
// before the window's start in which the target answered (or the oldest
// after it, when the history is shorter than the window).
func (s *Scraper) increases(sel Selector, window time.Duration) (map[string]seriesDelta, error) {
	c, err := sel.compile()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.scrapes) == 0 {
		return nil, fmt.Errorf("%s: %w: nothing scraped yet", sel, ErrNoData)
	}
	last := s.scrapes[len(s.scrapes)-1]
	start := last.at.Add(-window)
	out := map[string]seriesDelta{}
	names := make([]string, 0, len(last.targets))
	for n := range last.targets {
		names = append(names, n)
	}
	slices.Sort(names)
	based := 0
	for _, name := range names {
		now := last.targets[name]
		if now.err != nil {
			return nil, fmt.Errorf("%s: %w", sel, now.err)
		}
		base := s.baseOf(name, start)
		if base == nil {
			continue // first answer of this target: no rate yet
		}
		based++
		old := map[string]float64{}
		for _, x := range base.series {
			if c.matches(x.name, x.labels) {
				old[key(x.name, x.labels)] = x.value
			}
		}
		for _, x := range now.series {
			if !c.matches(x.name, x.labels) {
				continue
			}
			k := key(x.name, x.labels)
			d := x.value - old[k] // a series new since the base started at 0
			if d < 0 {
				d = x.value // the counter was reset (a restart)
			}
			out[name+"\x00"+k] = seriesDelta{labels: x.labels, delta: d}
		}
	}
	if based == 0 && len(names) > 0 {
		return nil, fmt.Errorf("%s: %w: one scrape of each target, two are needed for a rate", sel, ErrNoData)
	}
	return out, nil
}

type seriesDelta struct {
	labels map[string]string
	delta  float64
}

// baseOf is target's series in the newest scrape at or before start in
// which it answered, else the oldest after start but before the newest
// scrape; nil if there is none.
func (s *Scraper) baseOf(target string, start time.Time) *targetScrape {
	var after *targetScrape
	for i := len(s.scrapes) - 2; i >= 0; i-- {
		ts, ok := s.scrapes[i].targets[target]
		if !ok || ts.err != nil {
			continue
		}
		if !s.scrapes[i].at.After(start) {
			return ts
		}
		after = ts
	}
	return after
}

// Increase implements Source.
func (s *Scraper) Increase(_ context.Context, sel Selector, window time.Duration) (float64, error) {
	ds, err := s.increases(sel, window)
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for _, d := range ds {
		sum += d.delta
	}
	return sum, nil
}

// Quantile implements Source.
func (s *Scraper) Quantile(_ context.Context, q float64, hist Selector, window time.Duration) (float64, error) {
	b := hist
	b.Metric = hist.Metric + "_bucket"
	ds, err := s.increases(b, window)
	if err != nil {
		return 0, err
	}
	byLE := map[float64]float64{}
	for _, d := range ds {
		le, err := strconv.ParseFloat(d.labels["le"], 64)
		if err != nil {
			continue // not a bucket series
		}
		byLE[le] += d.delta
	}
	bs := make([]bucket, 0, len(byLE))
	for le, n := range byLE {
		bs = append(bs, bucket{UpperBound: le, Count: n})
	}
	v, err := bucketQuantile(q, bs)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", hist, err)
	}
	return v, nil
}
