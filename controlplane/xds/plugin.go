package xds

import (
	"fmt"
	"time"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// The JSON plugin configurations of the wasm filters: one entry per route
// name that has settings for the filter. Durations are milliseconds so the
// guests need no duration parser.

type fanoutPluginConfig struct {
	Routes map[string]fanoutRoute `json:"routes"`
}

type fanoutRoute struct {
	Members   []fanoutMember `json:"members,omitempty"`
	Strategy  string         `json:"strategy,omitempty"`
	Quorum    uint32         `json:"quorum,omitempty"`
	TimeoutMS int64          `json:"timeout_ms,omitempty"`
	Sequence  bool           `json:"sequence,omitempty"`
	Stacking  *stacking      `json:"stacking,omitempty"`
	Shadow    *shadow        `json:"shadow,omitempty"`
}

type fanoutMember struct {
	Cluster string  `json:"cluster"`
	Model   string  `json:"model"`
	Weight  float64 `json:"weight,omitempty"`
}

type stacking struct {
	Weights []float64 `json:"weights"`
	Bias    float64   `json:"bias"`
}

type shadow struct {
	Cluster string  `json:"cluster"`
	Model   string  `json:"model,omitempty"`
	Percent float64 `json:"percent"`
}

type sloPluginConfig struct {
	Routes map[string]sloRoute `json:"routes"`
}

type sloRoute struct {
	Latency      []latencyTarget `json:"latency,omitempty"`
	ErrorRate    float64         `json:"error_rate,omitempty"`
	Availability float64         `json:"availability,omitempty"`
	Windows      []burnWindow    `json:"windows,omitempty"`
	BudgetHeader bool            `json:"budget_header,omitempty"`
}

type latencyTarget struct {
	Percentile  float64 `json:"percentile"`
	ThresholdMS int64   `json:"threshold_ms"`
}

type burnWindow struct {
	Seconds  int64   `json:"seconds"`
	BurnRate float64 `json:"burn_rate"`
}

func errUnknownFilter(k model.FilterKind) error { return fmt.Errorf("unknown filter kind %q", k) }

// fanoutPlugin gathers the fanout settings (ensembles and compared shadows)
// of every route in rc.
func fanoutPlugin(rc *model.RouteConfig) fanoutPluginConfig {
	out := fanoutPluginConfig{Routes: map[string]fanoutRoute{}}
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			if fr, ok := fanoutFor(&r.Action); ok {
				out.Routes[r.Name] = fr
			}
		}
	}
	return out
}

// fanoutFor returns the fanout settings of one route, if it has any.
func fanoutFor(a *model.RouteAction) (fanoutRoute, bool) {
	var fr fanoutRoute
	set := false
	if f := a.Fanout; f != nil {
		set = true
		fr.Strategy, fr.Quorum, fr.TimeoutMS, fr.Sequence = f.Strategy, f.Quorum, ms(f.Timeout), f.Sequence
		for _, m := range f.Members {
			fr.Members = append(fr.Members, fanoutMember{Cluster: m.Cluster, Model: m.Model, Weight: m.Weight})
		}
		if f.Stacking != nil {
			fr.Stacking = &stacking{Weights: f.Stacking.Weights, Bias: f.Stacking.Bias}
		}
	}
	for _, m := range a.Mirrors {
		if m.Compare {
			set = true
			fr.Shadow = &shadow{Cluster: m.Cluster, Model: m.Model, Percent: m.Percent}
			break
		}
	}
	return fr, set
}

// sloPlugin gathers the SLO settings of every route in rc.
func sloPlugin(rc *model.RouteConfig) sloPluginConfig {
	out := sloPluginConfig{Routes: map[string]sloRoute{}}
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			s := r.Action.SLO
			if s == nil {
				continue
			}
			sr := sloRoute{ErrorRate: s.ErrorRate, Availability: s.Availability, BudgetHeader: s.BudgetHeader}
			for _, l := range s.Latency {
				sr.Latency = append(sr.Latency, latencyTarget{Percentile: l.Percentile, ThresholdMS: ms(l.Threshold)})
			}
			for _, w := range s.Windows {
				sr.Windows = append(sr.Windows, burnWindow{Seconds: int64(w.Duration / time.Second), BurnRate: w.BurnRate})
			}
			out.Routes[r.Name] = sr
		}
	}
	return out
}

func ms(d time.Duration) int64 { return d.Milliseconds() }
