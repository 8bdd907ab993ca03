package xds

import (
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// routeMode is who consumes a route configuration.
type routeMode int

const (
	// forEnvoy routes to clusters with Envoy's full feature set.
	forEnvoy routeMode = iota
	// forGRPCClient is a proxyless client's API listener: timeouts as max
	// stream durations, no mirrors, no zero-retry policies.
	forGRPCClient
	// forGRPCServer is an xDS gRPC server: requests are served locally
	// (non-forwarding routes); only the match matters.
	forGRPCServer
)

// modeOf is the route mode of a listener kind.
func modeOf(k model.ListenerKind) routeMode {
	switch k {
	case model.ListenerAPI:
		return forGRPCClient
	case model.ListenerGRPCServer:
		return forGRPCServer
	}
	return forEnvoy
}

// RouteConfiguration creates an Envoy RouteConfiguration from rc, for a
// listener without wasm filters; for proxyless gRPC clients, timeouts are
// also set as max stream durations (which is what gRPC reads) and mirrors,
// which gRPC ignores, are left out.
func RouteConfiguration(rc *model.RouteConfig, proxyless bool) (*routev3.RouteConfiguration, error) {
	return routeConfiguration(rc, clientMode(proxyless))
}

// ListenerRouteConfiguration creates the RouteConfiguration Envoy gets over
// RDS for l: its routes, each disabling the wasm filters of l that have
// nothing to do on it (FilterScopeOf, disabledFilters).
func ListenerRouteConfiguration(l *model.Listener) (*routev3.RouteConfiguration, error) {
	s := FilterScopeOf(l)
	return composeRoutes(&l.Routes, func(r *model.Route) (*routev3.Route, error) { return ScopedRoute(r, s) })
}

// ServerRouteConfiguration creates the route configuration of an xDS gRPC
// server: the same matches, each served locally.
func ServerRouteConfiguration(rc *model.RouteConfig) (*routev3.RouteConfiguration, error) {
	return routeConfiguration(rc, forGRPCServer)
}

func routeConfiguration(rc *model.RouteConfig, mode routeMode) (*routev3.RouteConfiguration, error) {
	return composeRoutes(rc, func(r *model.Route) (*routev3.Route, error) { return route(r, mode, FilterScope{}) })
}

// composeRoutes creates rc's configuration with each route made by build:
// the pure builder, or a translation's reuse of routes it built before.
func composeRoutes(rc *model.RouteConfig, build func(*model.Route) (*routev3.Route, error)) (*routev3.RouteConfiguration, error) {
	out := &routev3.RouteConfiguration{Name: rc.Name, VirtualHosts: make([]*routev3.VirtualHost, 0, len(rc.VirtualHosts))}
	for i := range rc.VirtualHosts {
		vh := &rc.VirtualHosts[i]
		rvh := VirtualHost(vh)
		rvh.Routes = make([]*routev3.Route, 0, len(vh.Routes))
		for j := range vh.Routes {
			r, err := build(&vh.Routes[j])
			if err != nil {
				return nil, fmt.Errorf("virtual host %q: %w", vh.Name, err)
			}
			rvh.Routes = append(rvh.Routes, r)
		}
		out.VirtualHosts = append(out.VirtualHosts, rvh)
	}
	return out, nil
}

// VirtualHost creates an Envoy VirtualHost from vh, without its routes.
func VirtualHost(vh *model.VirtualHost) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: vh.Name, Domains: vh.Domains}
}

// clientMode is the route mode of Envoy or of proxyless gRPC clients.
func clientMode(proxyless bool) routeMode {
	if proxyless {
		return forGRPCClient
	}
	return forEnvoy
}

// Route creates an Envoy Route from r, in a listener without wasm filters.
func Route(r *model.Route, proxyless bool) (*routev3.Route, error) {
	return route(r, clientMode(proxyless), FilterScope{})
}

// ScopedRoute creates the Envoy Route of r in an Envoy listener whose
// filter scope is s.
func ScopedRoute(r *model.Route, s FilterScope) (*routev3.Route, error) {
	return route(r, forEnvoy, s)
}

func route(r *model.Route, mode routeMode, s FilterScope) (*routev3.Route, error) {
	if mode == forGRPCServer {
		return &routev3.Route{
			Name:   r.Name,
			Match:  RouteMatch(&r.Match),
			Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
		}, nil
	}
	if mode != forEnvoy {
		s = FilterScope{} // proxyless listeners run no wasm filters
	}
	perFilter, err := perRouteFilterConfig(r, s)
	if err != nil {
		return nil, err
	}
	return &routev3.Route{
		Name:                 r.Name,
		Match:                RouteMatch(&r.Match),
		Action:               &routev3.Route_Route{Route: RouteAction(&r.Action, mode == forGRPCClient)},
		TypedPerFilterConfig: perFilter,
	}, nil
}

// RouteMatch creates an Envoy RouteMatch from m.
func RouteMatch(m *model.RouteMatch) *routev3.RouteMatch {
	out := &routev3.RouteMatch{}
	switch {
	case m.Path != "":
		out.PathSpecifier = &routev3.RouteMatch_Path{Path: m.Path}
	case m.SeparatedPrefix != "":
		// The path itself or the path followed by "/" (query excluded):
		// one route for a model's REST metadata, ready and infer paths.
		out.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: m.SeparatedPrefix}
	default:
		out.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: m.Prefix}
	}
	if m.GRPC {
		out.Grpc = &routev3.RouteMatch_GrpcRouteMatchOptions{}
	}
	for _, h := range m.Headers {
		out.Headers = append(out.Headers, headerMatcher(h))
	}
	return out
}

// headerMatcher creates an Envoy HeaderMatcher from h.
func headerMatcher(h model.HeaderMatch) *routev3.HeaderMatcher {
	out := &routev3.HeaderMatcher{Name: h.Name, InvertMatch: h.Invert}
	switch {
	case h.Present:
		out.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	case h.Prefix != "":
		out.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: prefix(h.Prefix)}
	case h.Regex != "":
		out.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: regex(h.Regex)}
	default:
		out.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: exact(h.Exact)}
	}
	return out
}

// RouteAction creates an Envoy RouteAction from a.
func RouteAction(a *model.RouteAction, proxyless bool) *routev3.RouteAction {
	out := &routev3.RouteAction{Timeout: duration(a.Timeout), RetryPolicy: retryPolicy(a.Retry)}
	switch {
	case a.Fanout != nil && a.Fanout.Sequence && len(a.Fanout.Members) > 0 && !proxyless:
		// The fanout filter runs the earlier steps out of band and rewrites
		// the last step's response, so the request itself goes there.
		out.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: primary(a)}
	case len(a.Clusters) == 1:
		out.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: a.Clusters[0].Name}
	default:
		out.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: weightedClusters(a.Clusters)}
	}
	if proxyless {
		if a.Retry != nil && a.Retry.Attempts == 0 {
			// gRPC rejects num_retries 0 (Envoy reads it as "no retries").
			out.RetryPolicy = nil
		}
		if a.Timeout > 0 {
			out.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: duration(a.Timeout)}
		}
		return out
	}
	out.RequestMirrorPolicies = mirrorPolicies(a.Mirrors)
	return out
}

// weightedClusters creates a traffic split; weights are relative.
func weightedClusters(ws []model.WeightedCluster) *routev3.WeightedCluster {
	out := &routev3.WeightedCluster{Clusters: make([]*routev3.WeightedCluster_ClusterWeight, 0, len(ws))}
	for _, w := range ws {
		out.Clusters = append(out.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: w.Name, Weight: wrapperspb.UInt32(w.Weight)})
	}
	return out
}

// mirrorPolicies creates Envoy mirrors for the shadows not handed to the
// fanout filter (Compare unset).
func mirrorPolicies(ms []model.Mirror) []*routev3.RouteAction_RequestMirrorPolicy {
	var out []*routev3.RouteAction_RequestMirrorPolicy
	for _, m := range ms {
		if m.Compare {
			continue
		}
		out = append(out, &routev3.RouteAction_RequestMirrorPolicy{
			Cluster:         m.Cluster,
			RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: perMillion(m.Percent), RuntimeKey: m.RuntimeKey},
		})
	}
	return out
}

// retryPolicy creates an Envoy RetryPolicy from r, or nil.
func retryPolicy(r *model.RetryPolicy) *routev3.RetryPolicy {
	if r == nil {
		return nil
	}
	return &routev3.RetryPolicy{
		RetryOn:       strings.Join(r.On, ","),
		NumRetries:    wrapperspb.UInt32(r.Attempts),
		PerTryTimeout: duration(r.PerTryTimeout),
	}
}
