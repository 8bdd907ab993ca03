package istio

import (
	"math"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// virtualServices renders one VirtualService per Service host that policy
// Routes point at. Istio rejects two VirtualServices for one host bound to
// the mesh gateway (IST0109), so the Routes of a host are merged, in name
// order, with catch-all Routes last so they cannot hide specific ones. It
// also returns every rendered route in model form, named as in the
// VirtualServices, for the filters' configuration.
func (r *renderer) virtualServices() ([]Resource, []model.Route) {
	byService := map[string][]*policy.Route{}
	var services []string
	for _, rt := range r.pm.Routes {
		s := routeService(&rt.Spec)
		if _, ok := byService[s]; !ok {
			services = append(services, s)
		}
		byService[s] = append(byService[s], rt)
	}
	slices.Sort(services)
	var out []Resource
	var all []model.Route
	for _, s := range services {
		routes := byService[s]
		slices.SortStableFunc(routes, func(a, b *policy.Route) int {
			return boolCmp(catchAll(a.Spec.Match), catchAll(b.Spec.Match))
		})
		vs := &networking.VirtualService{Hosts: []string{r.host(s)}}
		for _, rt := range routes {
			https, models := r.httpRoutes(rt)
			vs.Http = append(vs.Http, https...)
			all = append(all, models...)
		}
		ns := "default"
		if svc := r.pm.Service(s); svc != nil {
			ns = namespaceOf(svc.Metadata)
		}
		out = append(out, Resource{APIVersion: NetworkingAPIVersion, Kind: "VirtualService", Name: s, Namespace: ns, Spec: vs})
	}
	sortResources(out)
	return out, all
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// routeService is the Service whose host a Route's VirtualService is for.
func routeService(sp *policy.RouteSpec) string {
	switch {
	case sp.Service != "":
		return sp.Service
	case len(sp.Split) > 0:
		return sp.Split[0].Service
	case sp.Ensemble != nil && len(sp.Ensemble.Members) > 0:
		return sp.Ensemble.Members[0].Service
	}
	return ""
}

func catchAll(m policy.RouteMatch) bool {
	return m.Model == "" && m.Path == "" && m.PathPrefix == "" && len(m.Headers) == 0
}

// form is one way a policy route matches (as in controlplane/model): gRPC
// ModelInfer with the model header, or the REST path; suffix keeps route
// names unique, and equal to the native control plane's.
type form struct {
	suffix string
	match  *networking.HTTPMatchRequest
}

func (r *renderer) forms(m policy.RouteMatch) []form {
	base := func() *networking.HTTPMatchRequest {
		hm := &networking.HTTPMatchRequest{}
		addHeaders(hm, m.Headers)
		return hm
	}
	switch {
	case m.Model != "":
		grpc := base()
		grpc.Uri = exact(policy.OIPInferPath)
		if grpc.Headers == nil {
			grpc.Headers = map[string]*networking.StringMatch{}
		}
		grpc.Headers[r.pm.Config.Spec.ModelHeader] = exact(m.Model)
		rest := base()
		rest.Uri = prefix("/v2/models/" + m.Model + "/")
		switch m.Protocol {
		case policy.MatchGRPC:
			return []form{{match: grpc}}
		case policy.MatchHTTP:
			return []form{{match: rest}}
		}
		return []form{{match: grpc}, {suffix: ".rest", match: rest}}
	case m.PathPrefix != "":
		hm := base()
		hm.Uri = prefix(m.PathPrefix)
		return []form{{match: hm}}
	case m.Path != "":
		hm := base()
		hm.Uri = exact(m.Path)
		return []form{{match: hm}}
	}
	hm := base()
	hm.Uri = prefix("/")
	return []form{{match: hm}}
}

func exact(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
}

func prefix(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: s}}
}

// addHeaders adds policy header matches to hm; inverted ones go to
// withoutHeaders. "Present" is a regex matching any value, which only a
// present header can.
func addHeaders(hm *networking.HTTPMatchRequest, hs []policy.HeaderMatch) {
	for _, h := range hs {
		var sm *networking.StringMatch
		switch {
		case h.Exact != "":
			sm = exact(h.Exact)
		case h.Prefix != "":
			sm = prefix(h.Prefix)
		case h.Regex != "":
			sm = &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: h.Regex}}
		default:
			sm = &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: ".*"}}
		}
		target := &hm.Headers
		if h.Invert {
			target = &hm.WithoutHeaders
		}
		if *target == nil {
			*target = map[string]*networking.StringMatch{}
		}
		(*target)[h.Name] = sm
	}
}

// httpRoutes renders a policy route: each rule, then the route's own split,
// in every form.
func (r *renderer) httpRoutes(rt *policy.Route) ([]*networking.HTTPRoute, []model.Route) {
	sp := &rt.Spec
	var out []*networking.HTTPRoute
	var models []model.Route
	for _, f := range r.forms(sp.Match) {
		for _, rule := range sp.Rules {
			m := cloneMatch(f.match)
			addHeaders(m, rule.Headers)
			name := rt.Metadata.Name + "." + rule.Name + f.suffix
			out = append(out, r.httpRoute(name, m, sp, rule.Split))
			models = append(models, r.modelRoute(name, sp, rule.Split))
		}
		name := rt.Metadata.Name + f.suffix
		out = append(out, r.httpRoute(name, cloneMatch(f.match), sp, sp.Split))
		models = append(models, r.modelRoute(name, sp, sp.Split))
	}
	return out, models
}

// destinations is the split, or for an ensemble without one the member
// the fanout filter takes as primary (filterconfig.FanoutRoute.Primary):
// gRPC goes on to it and the filter rewrites its answer. That is the first
// member, or the last step of a sequence.
func destinations(sp *policy.RouteSpec, split []policy.Destination) []policy.Destination {
	if e := sp.Ensemble; len(split) == 0 && e != nil && len(e.Members) > 0 {
		m := e.Members[0]
		if e.Mode == policy.ModeSequence {
			m = e.Members[len(e.Members)-1]
		}
		return []policy.Destination{{Service: m.Service, Version: m.Version, Weight: 100}}
	}
	return split
}

func (r *renderer) destination(service, version string) *networking.Destination {
	return &networking.Destination{Host: r.host(service), Subset: version, Port: &networking.PortSelector{Number: r.port(service)}}
}

func (r *renderer) httpRoute(name string, m *networking.HTTPMatchRequest, sp *policy.RouteSpec, split []policy.Destination) *networking.HTTPRoute {
	hr := &networking.HTTPRoute{Name: name, Match: []*networking.HTTPMatchRequest{m}}
	for _, d := range destinations(sp, split) {
		hr.Route = append(hr.Route, &networking.HTTPRouteDestination{Destination: r.destination(d.Service, d.Version), Weight: int32(d.Weight)})
	}
	if sh := sp.Shadow; sh != nil && !sh.Compare {
		// A compared shadow is the fanout filter's to send; Envoy's
		// mirror would send a second copy.
		hr.Mirror = r.destination(sh.Service, sh.Version)
		hr.MirrorPercentage = &networking.Percent{Value: sh.Percentage}
	}
	if sp.Timeout > 0 {
		hr.Timeout = durationpb.New(sp.Timeout.D())
	}
	if rt := sp.Retries; rt != nil {
		hr.Retries = &networking.HTTPRetry{Attempts: int32(min(rt.Attempts, math.MaxInt32)), RetryOn: strings.Join(rt.On, ",")}
		if rt.PerTryTimeout > 0 {
			hr.Retries.PerTryTimeout = durationpb.New(rt.PerTryTimeout.D())
		}
	}
	if f := sp.Fault; f != nil {
		hr.Fault = fault(f)
	}
	return hr
}

func fault(f *policy.FaultInjection) *networking.HTTPFaultInjection {
	out := &networking.HTTPFaultInjection{}
	if d := f.Delay; d != nil {
		out.Delay = &networking.HTTPFaultInjection_Delay{
			Percentage:    &networking.Percent{Value: d.Percentage},
			HttpDelayType: &networking.HTTPFaultInjection_Delay_FixedDelay{FixedDelay: durationpb.New(d.Duration.D())},
		}
	}
	if a := f.Abort; a != nil {
		out.Abort = &networking.HTTPFaultInjection_Abort{Percentage: &networking.Percent{Value: a.Percentage}}
		if a.GRPCStatus != 0 {
			out.Abort.ErrorType = &networking.HTTPFaultInjection_Abort_GrpcStatus{GrpcStatus: GRPCStatusName(a.GRPCStatus)}
		} else {
			out.Abort.ErrorType = &networking.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: int32(a.HTTPStatus)}
		}
	}
	return out
}

// grpcStatusNames are the canonical names Istio's grpcStatus takes, by code.
var grpcStatusNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// GRPCStatusName is the canonical name of a gRPC status code, e.g.
// UNAVAILABLE for 14; codes beyond 16 are "UNKNOWN".
func GRPCStatusName(code uint32) string {
	if int(code) < len(grpcStatusNames) {
		return grpcStatusNames[code]
	}
	return "UNKNOWN"
}

// modelRoute is the route in the IR's terms, with Istio's cluster names:
// what the filters' plugin configuration is built from (xds.FanoutConfig,
// xds.SLOConfig), so it matches the native control plane's exactly.
func (r *renderer) modelRoute(name string, sp *policy.RouteSpec, split []policy.Destination) model.Route {
	a := model.RouteAction{Timeout: sp.Timeout.D()}
	for _, d := range destinations(sp, split) {
		a.Clusters = append(a.Clusters, model.WeightedCluster{Name: r.cluster(d.Service, d.Version), Weight: d.Weight})
	}
	// One conversion per concept, the native translation's, with Istio's
	// cluster names.
	a.Mirrors = model.MirrorsOf(sp.Shadow, r.cluster)
	a.Fanout = model.FanoutOf(sp.Ensemble, r.cluster)
	a.SLO = model.SLOOf(sp.SLO)
	return model.Route{Name: name, Action: a}
}

func cloneMatch(m *networking.HTTPMatchRequest) *networking.HTTPMatchRequest {
	return proto.Clone(m).(*networking.HTTPMatchRequest)
}
