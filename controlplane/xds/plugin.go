package xds

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

// BudgetHeader is the response header the slo filter writes the remaining
// error budget to, on routes whose SLO asks for it.
const BudgetHeader = "x-maestro-error-budget"

// PluginConfiguration returns the JSON plugin configuration of a filter of
// kind k for the routes of rc, in the filter's own format
// (wasmfilter/filterconfig), checked with its Validate: one entry per route
// that has settings for the filter, keyed by route name, in route order.
func PluginConfiguration(k model.FilterKind, rc *model.RouteConfig) ([]byte, error) {
	var (
		conf interface{ Validate() error }
	)
	switch k {
	case model.FilterFanout:
		f := FanoutConfig(rc)
		f.ModelRouting = ModelRoutingConfig(rc)
		conf = f
	case model.FilterSLO:
		conf = SLOConfig(rc)
	default:
		return nil, fmt.Errorf("unknown filter kind %q", k)
	}
	if err := conf.Validate(); err != nil {
		return nil, fmt.Errorf("%s plugin configuration: %w", k, err)
	}
	return json.Marshal(conf)
}

// FanoutConfig gathers the fanout settings (ensembles and compared
// shadows) of every route in rc.
func FanoutConfig(rc *model.RouteConfig) *filterconfig.Fanout {
	out := &filterconfig.Fanout{Routes: []filterconfig.FanoutRoute{}}
	for _, vh := range rc.VirtualHosts {
		for i := range vh.Routes {
			if fr, ok := fanoutRoute(&vh.Routes[i]); ok {
				out.Routes = append(out.Routes, fr)
			}
		}
	}
	return out
}

// ModelRoutingConfig lists the routes of rc that select a model by the
// model header (model.OIPModelMethodPrefix routes), in match order, for
// the fanout filter to route gRPC requests that name their model only in
// the message; nil when rc has none. The filter holds such requests in
// its request-headers callback, which works only with the Wasm config's
// allow_on_headers_stop_iteration that FilterConfig sets: a control plane
// that cannot set it (Istio's WasmPlugin) must leave this out.
func ModelRoutingConfig(rc *model.RouteConfig) *filterconfig.ModelRouting {
	var out *filterconfig.ModelRouting
	for _, vh := range rc.VirtualHosts {
		for i := range vh.Routes {
			r := &vh.Routes[i]
			header, name, rest, ok := modelMatch(&r.Match)
			if !ok {
				continue
			}
			if out == nil {
				out = &filterconfig.ModelRouting{Header: header}
			} else if header != out.Header {
				continue // one model header per mesh; never reached
			}
			mr := filterconfig.ModelRoute{Route: r.Name, Model: name}
			for _, h := range rest {
				mr.Headers = append(mr.Headers, filterconfig.HeaderMatch{Name: h.Name, Exact: h.Exact, Prefix: h.Prefix,
					Regex: h.Regex, Present: h.Present, Invert: h.Invert})
			}
			out.Routes = append(out.Routes, mr)
		}
	}
	return out
}

// modelMatch splits the match of a gRPC model route (the per-model methods,
// the model header first, then the route's own header matches) into the
// header name, the model and the other matches.
func modelMatch(m *model.RouteMatch) (header, name string, rest []model.HeaderMatch, ok bool) {
	if !m.GRPC || m.Prefix != model.OIPModelMethodPrefix || len(m.Headers) == 0 {
		return "", "", nil, false
	}
	h := m.Headers[0]
	if h.Exact == "" || h.Invert {
		return "", "", nil, false
	}
	return h.Name, h.Exact, m.Headers[1:], true
}

// fanoutRoute returns the fanout settings of one route, if it has any. The
// route's own destination, when it is a member, is the primary: the member
// whose response the filter rewrites for gRPC.
func fanoutRoute(r *model.Route) (filterconfig.FanoutRoute, bool) {
	a := &r.Action
	fr := filterconfig.FanoutRoute{Route: r.Name}
	set := false
	if f := a.Fanout; f != nil {
		set = true
		fr.TimeoutMs, fr.Sequence = millis(f.Timeout), f.Sequence
		if !f.Sequence {
			// A sequence combines nothing and needs every step.
			fr.Strategy, fr.Quorum = filterconfig.Strategy(f.Strategy), f.Quorum
		}
		for _, m := range f.Members {
			fr.Members = append(fr.Members, filterconfig.FanoutMember{Cluster: m.Cluster, Model: m.Model, Weight: m.Weight})
		}
		labelDuplicates(fr.Members)
		if f.Stacking != nil {
			fr.Stacking = &filterconfig.Stacking{Weights: slices.Clone(f.Stacking.Weights), Bias: f.Stacking.Bias}
		}
		fr.Primary = primary(a)
		fr.Observe = observe(f)
	}
	for _, m := range a.Mirrors {
		if m.Compare {
			set = true
			fr.Shadows = append(fr.Shadows, filterconfig.Shadow{Cluster: m.Cluster, Model: m.Model, Percent: m.Percent})
		}
	}
	return fr, set
}

// primary is the member the route forwards gRPC requests to: the last step
// of a sequence (RouteAction routes there too), else the route's own
// destination when it is a member, else "" (the filter's default, the
// first member).
func primary(a *model.RouteAction) string {
	f := a.Fanout
	if f.Sequence && len(f.Members) > 0 {
		return f.Members[len(f.Members)-1].Cluster
	}
	if len(a.Clusters) == 1 && slices.ContainsFunc(f.Members, func(m model.FanoutMember) bool { return m.Cluster == a.Clusters[0].Name }) {
		return a.Clusters[0].Name
	}
	return ""
}

// observe is the filter's observe block of an observed fanout, nil for
// others.
func observe(f *model.Fanout) *filterconfig.Observe {
	o := f.Observe
	if o == nil {
		return nil
	}
	out := &filterconfig.Observe{Cluster: o.Cluster, Route: o.Route, Percent: o.Percent, Members: make([]string, len(f.Members))}
	for i, m := range f.Members {
		out.Members[i] = m.Name
	}
	return out
}

// labelDuplicates names members that share a cluster (cluster/model), since
// the filter labels members by cluster otherwise and labels must be unique.
func labelDuplicates(ms []filterconfig.FanoutMember) {
	count := map[string]int{}
	for _, m := range ms {
		count[m.Cluster]++
	}
	for i := range ms {
		if count[ms[i].Cluster] > 1 {
			ms[i].Name = ms[i].Cluster + "/" + ms[i].Model
		}
	}
}

// SLOConfig gathers the SLO settings of every route in rc. The model's burn
// windows are sorted by duration; the first two become the filter's short
// and long windows (the paging pair of multi-window burn-rate alerting).
func SLOConfig(rc *model.RouteConfig) *filterconfig.SLO {
	out := &filterconfig.SLO{Objectives: []filterconfig.SLOObjective{}}
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			if s := r.Action.SLO; s != nil {
				out.Objectives = append(out.Objectives, sloObjective(r.Name, s))
			}
		}
	}
	return out
}

// sloObjective converts one route's SLO; when both an availability and an
// error rate are given, the stricter wins (the filter takes one).
func sloObjective(route string, s *model.SLO) filterconfig.SLOObjective {
	o := filterconfig.SLOObjective{Route: route}
	switch {
	case s.Availability > 0 && s.ErrorRate > 0:
		o.Availability = math.Max(s.Availability, 1-s.ErrorRate)
	case s.Availability > 0:
		o.Availability = s.Availability
	default:
		o.ErrorRate = s.ErrorRate
	}
	for _, l := range s.Latency {
		o.Latency = append(o.Latency, filterconfig.LatencyTarget{Percentile: l.Percentile, ThresholdMs: millis(l.Threshold)})
	}
	if len(s.Windows) > 0 {
		o.ShortWindowSeconds, o.ShortBurnThreshold = seconds(s.Windows[0].Duration), s.Windows[0].BurnRate
	}
	if len(s.Windows) > 1 {
		o.LongWindowSeconds, o.LongBurnThreshold = seconds(s.Windows[1].Duration), s.Windows[1].BurnRate
	}
	if s.BudgetHeader {
		o.BudgetHeader = BudgetHeader
	}
	return o
}

// millis converts d to whole milliseconds, saturating at the uint32 range.
func millis(d time.Duration) uint32 {
	return uint32(min(max(d.Milliseconds(), 0), math.MaxUint32))
}

// seconds converts d to whole seconds, saturating at the uint32 range.
func seconds(d time.Duration) uint32 {
	return uint32(min(max(int64(d/time.Second), 0), math.MaxUint32))
}
