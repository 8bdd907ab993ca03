// Package cost turns the inference servers' per-model meters (CPU seconds,
// predictions, resident bytes; see inference/metering) into what each
// model version and each route of a mesh policy costs, in core-seconds,
// GB-seconds and dollars per million predictions, and recommends where
// money is wasted: models loaded but idle, replicas beyond the measured
// load. Usage comes from the servers' /metrics (Scrape, Integrate) or
// from a Prometheus (QueryPrometheus); Build is the same for both.
package cost

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// Prices are what the user pays for compute.
type Prices struct {
	CPUCoreHour  float64 // dollars per core (vCPU) hour
	MemoryGBHour float64 // dollars per GB hour (a GB is 2^30 bytes, as cloud price lists count it)
}

// bytesPerGB is the GB of cloud price lists: Compute Engine, EC2 and
// Azure all bill memory in GiB.
const bytesPerGB = 1 << 30

// Default prices: Google Compute Engine's on-demand rates in us-central1
// per vCPU hour and per GB hour of memory (the general-purpose N2 SKUs),
// the price set OpenCost and Kubecost ship as their defaults. See
// docs/cost.md for the sources and what was checked.
const (
	DefaultCPUCoreHour  = 0.031611
	DefaultMemoryGBHour = 0.004237
)

// DefaultPrices returns the documented default prices.
func DefaultPrices() Prices {
	return Prices{CPUCoreHour: DefaultCPUCoreHour, MemoryGBHour: DefaultMemoryGBHour}
}

// dollars prices core-seconds and GB-seconds.
func (p Prices) dollars(coreSeconds, gbSeconds float64) float64 {
	return coreSeconds/3600*p.CPUCoreHour + gbSeconds/3600*p.MemoryGBHour
}

// Row is one replica's use of one model version over the window.
type Row struct {
	// Service and ServiceVersion name the policy's service version the
	// replica belongs to; empty when the source does not say (then the
	// row is matched to routes by model name alone).
	Service, ServiceVersion string
	Instance                string // the replica: a target URL or a Prometheus instance
	Model, Version          string
	Predictions             float64
	CoreSeconds             float64
	GBSeconds               float64
	// Resident: the version was loaded at the end of the window.
	Resident bool
	// Cores is the replica's CPU allowance (GOMAXPROCS); 0 when unknown.
	Cores float64
}

// Server is one replica's whole-process CPU over the window.
type Server struct {
	Instance                string
	Service, ServiceVersion string
	ProcessCoreSeconds      float64
	// ModelCoreSeconds is the part its models' meters account for; Build
	// fills it in.
	ModelCoreSeconds float64
}

// Options tune Build.
type Options struct {
	// Servers, if given, are set against the models' CPU, to show how much
	// of each server's CPU the per-model figures cover (the rest is
	// protocol, batching and runtime overhead).
	Servers []Server
	Prices  Prices
	// Mesh, if set, attributes usage to its routes.
	Mesh *policy.Mesh
	// TargetUtilization is the share of a replica's cores the measured load
	// may fill before latency suffers; default 0.6.
	TargetUtilization float64
	// ReplicaCores overrides the replicas' reported cores when > 0.
	ReplicaCores float64
}

// Usage is what one model version, or one route, used and cost.
type Usage struct {
	Predictions float64
	CoreSeconds float64
	GBSeconds   float64
	Dollars     float64
}

// PerMillion is the cost of a million predictions; NaN with none.
func (u Usage) PerMillion() float64 {
	if u.Predictions == 0 {
		return math.NaN()
	}
	return u.Dollars / u.Predictions * 1e6
}

// CoreSecondsPerMillion is the CPU a million predictions take; NaN with
// none.
func (u Usage) CoreSecondsPerMillion() float64 {
	if u.Predictions == 0 {
		return math.NaN()
	}
	return u.CoreSeconds / u.Predictions * 1e6
}

func (u *Usage) add(r Row) {
	u.Predictions += r.Predictions
	u.CoreSeconds += r.CoreSeconds
	u.GBSeconds += r.GBSeconds
}

// ModelCost is one model version in one service version, over its
// replicas.
type ModelCost struct {
	Service, ServiceVersion string
	Model, Version          string
	Replicas                int
	Usage
}

// Component is one part of a route's traffic: a split destination, an
// ensemble member or a shadow.
type Component struct {
	Role                    string // "split", "member" or "shadow"
	Service, ServiceVersion string // ServiceVersion "" is any version
	Model                   string
}

// RouteCost is a route: its own predictions (those its clients asked
// for) and the cost of everything they caused, fan-out and shadow copies
// included.
type RouteCost struct {
	Route      string
	Components []Component
	Usage
}

// Recommendation is a saving, with the numbers behind it.
type Recommendation struct {
	Kind    string // "idle" or "replicas"
	Subject string
	Message string
	// MonthlyDollars is what acting on it would save in a 730-hour month
	// at the measured rate.
	MonthlyDollars float64
}

// Report is the outcome of Build.
type Report struct {
	Window          time.Duration
	Prices          Prices
	Models          []ModelCost
	Routes          []RouteCost
	Servers         []Server
	Recommendations []Recommendation
}

// hoursPerMonth is the average month (8,760 h / 12), as cloud bills count.
const hoursPerMonth = 730

// Build prices rows measured over window and attributes them to the
// mesh's routes.
func Build(rows []Row, window time.Duration, opts Options) (*Report, error) {
	if window <= 0 {
		return nil, fmt.Errorf("window %v: want a positive duration", window)
	}
	if opts.TargetUtilization == 0 {
		opts.TargetUtilization = 0.6
	}
	if opts.TargetUtilization < 0 || opts.TargetUtilization > 1 {
		return nil, fmt.Errorf("target utilization %v: want a share in (0, 1]", opts.TargetUtilization)
	}
	// Sources build rows from maps; sorted, the report is the same each run.
	rows = slices.Clone(rows)
	slices.SortFunc(rows, func(a, b Row) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.ServiceVersion, b.ServiceVersion),
			cmp.Compare(a.Model, b.Model), cmp.Compare(a.Version, b.Version), cmp.Compare(a.Instance, b.Instance))
	})
	rep := &Report{Window: window, Prices: opts.Prices}
	rep.Models = models(rows, opts.Prices)
	for _, srv := range opts.Servers {
		for _, r := range rows {
			if r.Instance == srv.Instance {
				srv.ModelCoreSeconds += r.CoreSeconds
			}
		}
		rep.Servers = append(rep.Servers, srv)
	}
	slices.SortFunc(rep.Servers, func(a, b Server) int { return cmp.Compare(a.Instance, b.Instance) })
	if opts.Mesh != nil {
		rep.Routes = routes(rows, opts.Mesh, opts.Prices)
	}
	rep.Recommendations = append(idle(rows, window, opts.Prices), replicas(rows, window, opts)...)
	return rep, nil
}

type modelKey struct{ svc, sv, model, ver string }

func models(rows []Row, p Prices) []ModelCost {
	aggs := aggregate(rows)
	out := make([]ModelCost, len(aggs))
	for i, a := range aggs {
		out[i] = ModelCost{Service: a.svc, ServiceVersion: a.sv, Model: a.model, Version: a.ver, Replicas: a.replicas, Usage: a.Usage}
		out[i].Dollars = p.dollars(a.CoreSeconds, a.GBSeconds)
	}
	slices.SortFunc(out, func(a, b ModelCost) int {
		return cmp.Or(cmp.Compare(a.Model, b.Model), cmp.Compare(a.Version, b.Version),
			cmp.Compare(a.Service, b.Service), cmp.Compare(a.ServiceVersion, b.ServiceVersion))
	})
	return out
}

// Components lists what a route's requests reach: the destinations of its
// split and rules (or, for an ensemble without a split, its first member,
// or else the service's only version), every ensemble member, and the
// shadow. Model names default as the policy defaults them.
func Components(r *policy.Route) []Component {
	s := r.Spec
	model := s.Match.Model
	var out []Component
	dests := slices.Clone(s.Split)
	for _, rule := range s.Rules {
		dests = append(dests, rule.Split...)
	}
	for _, d := range dests {
		out = append(out, Component{Role: "split", Service: cmp.Or(d.Service, s.Service), ServiceVersion: d.Version, Model: model})
	}
	if s.Ensemble != nil {
		for i, m := range s.Ensemble.Members {
			c := Component{Role: "member", Service: cmp.Or(m.Service, s.Service), ServiceVersion: m.Version, Model: cmp.Or(m.Model, model)}
			if i == 0 && len(dests) == 0 {
				c.Role = "split"
			}
			out = append(out, c)
		}
	}
	if len(dests) == 0 && s.Ensemble == nil {
		out = append(out, Component{Role: "split", Service: s.Service, Model: model})
	}
	if sh := s.Shadow; sh != nil {
		out = append(out, Component{Role: "shadow", Service: cmp.Or(sh.Service, s.Service), ServiceVersion: sh.Version, Model: cmp.Or(sh.Model, model)})
	}
	return out
}

// matches reports whether row r is usage of component c: the same model,
// and the same service version when the row names one.
func (c Component) matches(r Row) bool {
	if r.Model != c.Model || c.Model == "" {
		return false
	}
	if r.Service == "" {
		return true
	}
	return r.Service == c.Service && (c.ServiceVersion == "" || r.ServiceVersion == c.ServiceVersion)
}

func routes(rows []Row, mesh *policy.Mesh, p Prices) []RouteCost {
	var out []RouteCost
	for _, rt := range mesh.Routes {
		rc := RouteCost{Route: rt.Metadata.Name, Components: Components(rt)}
		// Each row counts once in a route even when several components
		// match it (a member that is also the split destination).
		for _, r := range rows {
			var cost, primary bool
			for _, c := range rc.Components {
				if c.matches(r) {
					cost = true
					primary = primary || c.Role == "split"
				}
			}
			if !cost {
				continue
			}
			rc.CoreSeconds += r.CoreSeconds
			rc.GBSeconds += r.GBSeconds
			if primary {
				rc.Predictions += r.Predictions
			}
		}
		rc.Dollars = p.dollars(rc.CoreSeconds, rc.GBSeconds)
		out = append(out, rc)
	}
	return out
}

// idle finds versions loaded at the end of the window that answered
// nothing during it: their memory is paid for nothing.
func idle(rows []Row, window time.Duration, p Prices) []Recommendation {
	var out []Recommendation
	for _, m := range aggregate(rows) {
		if !m.resident || m.Predictions > 0 {
			continue
		}
		gb := m.GBSeconds / window.Seconds()
		monthly := gb * p.MemoryGBHour * hoursPerMonth
		out = append(out, Recommendation{
			Kind:    "idle",
			Subject: m.subject(),
			Message: fmt.Sprintf("loaded on %d replica(s) but served 0 predictions in %v: %.3f GB held on average (%.1f GB-s); unload it or lower its cache priority",
				m.replicas, window.Round(time.Millisecond), gb, m.GBSeconds),
			MonthlyDollars: monthly,
		})
	}
	return out
}

type aggregated struct {
	modelKey
	Usage
	resident bool
	replicas int
}

func (a aggregated) subject() string {
	s := a.model + " v" + a.ver
	if a.svc != "" {
		s += " on " + a.svc + "/" + a.sv
	}
	return s
}

func aggregate(rows []Row) []aggregated {
	idx := map[modelKey]int{}
	var out []aggregated
	for _, r := range rows {
		k := modelKey{r.Service, r.ServiceVersion, r.Model, r.Version}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, aggregated{modelKey: k})
		}
		out[i].add(r)
		out[i].resident = out[i].resident || r.Resident
		out[i].replicas++ // a source gives one row per replica and version
	}
	return out
}
