package xds_test

import (
	"slices"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/xds"
)

// TestDisabledFilters lists routes of a gateway listener with both wasm
// filters and the filters each route must disable: only those with nothing
// to do on it, and none on a route where the fanout filter may route a
// request anew (the chain Envoy builds from the first route is kept). The
// listener's first route makes x-maestro-model its model header.
func TestDisabledFilters(t *testing.T) {
	const header = "x-maestro-model"
	modelRoute := func(name string, extra ...model.HeaderMatch) model.RouteMatch {
		return model.RouteMatch{Prefix: model.OIPModelMethodPrefix, GRPC: true,
			Headers: append([]model.HeaderMatch{{Name: header, Exact: name}}, extra...)}
	}
	to := []model.WeightedCluster{{Name: "fraud.v1", Weight: 1}}
	slo := &model.SLO{Availability: 0.99}
	ensemble := &model.Fanout{Members: []model.FanoutMember{{Cluster: "fraud.v1", Model: "fraud"}, {Cluster: "fraud.v2", Model: "fraud"}}, Quorum: 1}
	tests := map[string]struct {
		match  model.RouteMatch
		action model.RouteAction
		want   []string
	}{
		"plain model route":             {modelRoute("fraud"), model.RouteAction{Clusters: to}, []string{"edge.fanout", "edge.slo"}},
		"model route with an SLO":       {modelRoute("fraud"), model.RouteAction{Clusters: to, SLO: slo}, []string{"edge.fanout"}},
		"model route with an ensemble":  {modelRoute("fraud"), model.RouteAction{Clusters: to, Fanout: ensemble}, []string{"edge.slo"}},
		"model route with more headers": {modelRoute("fraud", model.HeaderMatch{Name: "x-beta", Present: true}), model.RouteAction{Clusters: to}, []string{"edge.fanout", "edge.slo"}},
		"compared shadow":               {modelRoute("fraud"), model.RouteAction{Clusters: to, Mirrors: []model.Mirror{{Cluster: "fraud.v2", Percent: 10, Compare: true}}}, []string{"edge.slo"}},
		"plain mirror":                  {modelRoute("fraud"), model.RouteAction{Clusters: to, Mirrors: []model.Mirror{{Cluster: "fraud.v2", Percent: 10}}}, []string{"edge.fanout", "edge.slo"}},
		"REST model path":               {model.RouteMatch{SeparatedPrefix: "/v2/models/fraud"}, model.RouteAction{Clusters: to}, []string{"edge.fanout", "edge.slo"}},
		"REST health path":              {model.RouteMatch{Path: "/v2/health/ready"}, model.RouteAction{Clusters: to}, []string{"edge.fanout", "edge.slo"}},
		// A gRPC call without the model header may land on these first
		// and be routed anew to a model route: both filters stay.
		"catch-all prefix":       {model.RouteMatch{Prefix: "/"}, model.RouteAction{Clusters: to}, nil},
		"service prefix":         {model.RouteMatch{Prefix: "/inference.GRPCInferenceService/"}, model.RouteAction{Clusters: to}, nil},
		"method path":            {model.RouteMatch{Path: "/inference.GRPCInferenceService/ModelInfer", GRPC: true}, model.RouteAction{Clusters: to}, nil},
		"another header's value": {model.RouteMatch{Prefix: model.OIPModelMethodPrefix, GRPC: true, Headers: []model.HeaderMatch{{Name: "x-other", Exact: "a"}}}, model.RouteAction{Clusters: to}, nil},
		"model header inverted":  {model.RouteMatch{Prefix: model.OIPModelMethodPrefix, GRPC: true, Headers: []model.HeaderMatch{{Name: header, Exact: "a", Invert: true}}}, model.RouteAction{Clusters: to}, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l := &model.Listener{Name: "edge", Kind: model.ListenerGateway, Filters: []model.WasmFilter{
				{Name: "edge.fanout", Kind: model.FilterFanout}, {Name: "edge.slo", Kind: model.FilterSLO}},
				Routes: model.RouteConfig{Name: "edge", VirtualHosts: []model.VirtualHost{{Name: "edge", Domains: []string{"*"}, Routes: []model.Route{
					{Name: "model", Match: modelRoute("churn"), Action: model.RouteAction{Clusters: to}},
					{Name: "r", Match: tc.match, Action: tc.action},
				}}}}}
			rc, err := xds.ListenerRouteConfiguration(l)
			if err != nil {
				t.Fatal(err)
			}
			if err := rc.ValidateAll(); err != nil {
				t.Fatal(err)
			}
			if got := disabled(t, rc.VirtualHosts[0].Routes[1]); !slices.Equal(got, tc.want) {
				t.Errorf("disabled %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDisabledFiltersNeedTheirListener checks what disables nothing: a
// listener without model routes cannot route anew (the catch-all then
// disables both), and a listener without wasm filters disables none.
func TestDisabledFiltersNeedTheirListener(t *testing.T) {
	catchAll := model.Route{Name: "all", Match: model.RouteMatch{Prefix: "/"}, Action: model.RouteAction{Clusters: []model.WeightedCluster{{Name: "a", Weight: 1}}}}
	routes := model.RouteConfig{Name: "edge", VirtualHosts: []model.VirtualHost{{Name: "edge", Domains: []string{"*"}, Routes: []model.Route{catchAll}}}}
	tests := map[string]struct {
		filters []model.WasmFilter
		want    []string
	}{
		"no model routes": {[]model.WasmFilter{{Name: "edge.fanout", Kind: model.FilterFanout}, {Name: "edge.slo", Kind: model.FilterSLO}}, []string{"edge.fanout", "edge.slo"}},
		"slo alone":       {[]model.WasmFilter{{Name: "edge.slo", Kind: model.FilterSLO}}, []string{"edge.slo"}},
		"no wasm filters": {nil, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l := &model.Listener{Name: "edge", Kind: model.ListenerGateway, Filters: tc.filters, Routes: routes}
			rc, err := xds.ListenerRouteConfiguration(l)
			if err != nil {
				t.Fatal(err)
			}
			if got := disabled(t, rc.VirtualHosts[0].Routes[0]); !slices.Equal(got, tc.want) {
				t.Errorf("disabled %q, want %q", got, tc.want)
			}
		})
	}
}

// disabled returns the filters r disables, sorted, checking each entry is
// FilterConfig{disabled: true} and nothing else.
func disabled(t *testing.T, r *routev3.Route) []string {
	t.Helper()
	var out []string
	for name, a := range r.GetTypedPerFilterConfig() {
		fc := &routev3.FilterConfig{}
		if a.UnmarshalTo(fc) != nil {
			continue // the fault filter's override
		}
		if !fc.GetDisabled() || fc.GetConfig() != nil || fc.GetIsOptional() {
			t.Errorf("%s: %v, want only disabled: true", name, fc)
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
