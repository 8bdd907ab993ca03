package xds

import (
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// Filter names and types the builders use.
const (
	rbacFilter = "envoy.filters.http.rbac"
	// WasmRuntime is the VM Envoy runs the filters in.
	WasmRuntime = "envoy.wasm.runtime.v8"
	// wasmTypeURL is the type ECDS delivers for a wasm filter.
	wasmTypeURL = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
	// remoteCodeTimeout bounds the download of remote filter code.
	remoteCodeTimeout = 30 * time.Second
)

// HTTPFilters returns the HTTP filter chain of l: RBAC, fault injection,
// the wasm filters (over ECDS), and the router, which must come last.
func HTTPFilters(l *model.Listener) ([]*hcmv3.HttpFilter, error) {
	var out []*hcmv3.HttpFilter
	if l.Authorization != nil {
		f, err := typedFilter(rbacFilter, RBAC(l.Authorization))
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	if hasFault(&l.Routes) && l.Kind != model.ListenerGRPCServer {
		// Faults are set per route; the listener-level filter does nothing.
		f, err := typedFilter(wellknown.Fault, &faultv3.HTTPFault{})
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	if !l.InlineRoutes() {
		for _, w := range l.Filters {
			out = append(out, discoveredFilter(w.Name))
		}
	}
	router, err := typedFilter(wellknown.Router, &routerv3.Router{})
	if err != nil {
		return nil, err
	}
	return append(out, router), nil
}

// typedFilter creates an HTTP filter with an inline config.
func typedFilter(name string, config proto.Message) (*hcmv3.HttpFilter, error) {
	packed, err := anyOf(config)
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: packed}}, nil
}

// discoveredFilter creates an HTTP filter whose config comes over ECDS.
func discoveredFilter(name string) *hcmv3.HttpFilter { return DiscoveredWasmFilter(name) }

// DiscoveredWasmFilter is the HTTP filter entry of the wasm filter whose
// config is the ECDS resource name, over ADS; the Istio renderer inserts
// the same entry with an EnvoyFilter.
func DiscoveredWasmFilter(name string) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{
		ConfigDiscovery: &corev3.ExtensionConfigSource{ConfigSource: adsSource(), TypeUrls: []string{wasmTypeURL}},
	}}
}

// hasFault reports whether any route of rc injects faults.
func hasFault(rc *model.RouteConfig) bool {
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			if r.Action.Fault != nil {
				return true
			}
		}
	}
	return false
}

// Fault creates the per-route fault filter config from f.
func Fault(f *model.Fault) *faultv3.HTTPFault {
	out := &faultv3.HTTPFault{}
	if f.DelayPercent > 0 && f.Delay > 0 {
		out.Delay = &faultcommonv3.FaultDelay{
			FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(f.Delay)},
			Percentage:         perMillion(f.DelayPercent),
		}
	}
	if f.AbortPercent > 0 {
		out.Abort = &faultv3.FaultAbort{Percentage: perMillion(f.AbortPercent)}
		if f.AbortGRPCStatus != 0 {
			out.Abort.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: f.AbortGRPCStatus}
		} else {
			out.Abort.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: f.AbortHTTPStatus}
		}
	}
	return out
}

// RBAC creates the RBAC filter config from a.
func RBAC(a *model.Authorization) *rbacfilterv3.RBAC {
	rules := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{}}
	if a.Action == model.AuthzDeny {
		rules.Action = rbacv3.RBAC_DENY
	}
	for _, r := range a.Rules {
		rules.Policies[r.Name] = &rbacv3.Policy{Permissions: []*rbacv3.Permission{permission(&r)}, Principals: principals(r.Principals)}
	}
	return &rbacfilterv3.RBAC{Rules: rules}
}

// permission matches requests whose path is any of r's and whose headers
// all match.
func permission(r *model.AuthzRule) *rbacv3.Permission {
	var all []*rbacv3.Permission
	var paths []*rbacv3.Permission
	for _, p := range r.Paths {
		paths = append(paths, urlPath(exact(p)))
	}
	for _, p := range r.Prefixes {
		paths = append(paths, urlPath(prefix(p)))
	}
	if len(paths) > 0 {
		all = append(all, &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: paths}}})
	}
	for _, h := range r.Headers {
		all = append(all, &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatcher(h)}})
	}
	if len(all) == 0 {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: all}}}
}

// urlPath matches the request path (without query) with m.
func urlPath(m *matcherv3.StringMatcher) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
		Rule: &matcherv3.PathMatcher_Path{Path: m},
	}}}
}

// principals matches peers whose certificate carries any of ids; "*" is
// any authenticated peer, and no ids is anyone.
func principals(ids []string) []*rbacv3.Principal {
	if len(ids) == 0 {
		return []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}}
	}
	out := make([]*rbacv3.Principal, 0, len(ids))
	for _, id := range ids {
		auth := &rbacv3.Principal_Authenticated{}
		if id != "*" {
			auth.PrincipalName = exact(id)
		}
		out = append(out, &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: auth}})
	}
	return out
}

// FilterConfig creates the ECDS resource of wasm filter f: the Wasm filter
// config whose plugin configuration is the JSON of the per-route settings
// gathered from rc, keyed by route name (the filter looks its route up with
// the `xds.route_name` property).
func FilterConfig(f model.WasmFilter, rc *model.RouteConfig) (*corev3.TypedExtensionConfig, error) {
	conf, err := PluginConfiguration(f.Kind, rc)
	if err != nil {
		return nil, err
	}
	w, err := WasmConfig(f, conf)
	if err != nil {
		return nil, err
	}
	wasm, err := anyOf(w)
	if err != nil {
		return nil, err
	}
	return &corev3.TypedExtensionConfig{Name: f.Name, TypedConfig: wasm}, nil
}

// WasmConfig is the Wasm filter config of f with the plugin configuration
// conf (JSON): f's module in the V8 runtime, and for the fanout filter
// allow_on_headers_stop_iteration (see stopIterationOnHeaders). The Istio
// renderer serves the same config through an EnvoyFilter.
func WasmConfig(f model.WasmFilter, conf []byte) (*wasmfilterv3.Wasm, error) {
	confAny, err := anyOf(wrapperspb.String(string(conf)))
	if err != nil {
		return nil, err
	}
	return &wasmfilterv3.Wasm{Config: &wasmv3.PluginConfig{
		Name:          f.Name,
		RootId:        string(f.Kind),
		Configuration: confAny,
		Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{
			VmId:    "maestro." + string(f.Kind),
			Runtime: WasmRuntime,
			Code:    wasmCode(f.Code),
		}},
		AllowOnHeadersStopIteration: stopIterationOnHeaders(f.Kind),
	}}, nil
}

// stopIterationOnHeaders is the Wasm config's allow_on_headers_stop_iteration
// (Envoy >= 1.35) for a filter of kind k: true for fanout, unset otherwise.
//
// The fanout filter pauses in proxy_on_request_headers to see the body
// before the router does: a REST ensemble is answered from the body, and a
// gRPC request without the model header gets it from model_name in its
// first message, so that the route is chosen by model. proxy-wasm-cpp-host
// (src/context.cc, convertVmCallResultToFilterHeadersStatus) turns that
// StopIteration into StopAllIterationAndWatermark unless the flag is set;
// under stop-all Envoy buffers the body without calling the filter's
// decodeData, so the request would wait for the stream idle timeout. With
// the flag, Envoy keeps the headers (Context::decodeHeaders keeps
// request_headers_ only when the filter does not continue) and delivers
// the body; a header set from the body callback clears the route cache
// (Context::onHeadersModified, automatic for ABI 0.2.1 modules), so the
// router, which has not seen the headers yet, picks the route anew.
func stopIterationOnHeaders(k model.FilterKind) *wrapperspb.BoolValue {
	if k == model.FilterFanout {
		return wrapperspb.Bool(true)
	}
	return nil
}

// wasmCode points Envoy at a local file or a remote module with its digest.
func wasmCode(c model.WasmCode) *corev3.AsyncDataSource {
	if c.URL == "" {
		return &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Local{Local: &corev3.DataSource{
			Specifier: &corev3.DataSource_Filename{Filename: c.Path},
		}}}
	}
	return &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Remote{Remote: &corev3.RemoteDataSource{
		HttpUri: &corev3.HttpUri{
			Uri:              c.URL,
			HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: c.Cluster},
			Timeout:          durationpb.New(remoteCodeTimeout),
		},
		Sha256: c.SHA256,
	}}}
}

// perRouteFilterConfig returns the route's typed_per_filter_config: the
// fault override where the route injects faults, and the wasm filters of
// scope s that the route disables (disabledFilters).
func perRouteFilterConfig(r *model.Route, s FilterScope) (map[string]*anypb.Any, error) {
	disabled := disabledFilters(r, s)
	if r.Action.Fault == nil && len(disabled) == 0 {
		return nil, nil
	}
	out := make(map[string]*anypb.Any, len(disabled)+1)
	if r.Action.Fault != nil {
		f, err := anyOf(Fault(r.Action.Fault))
		if err != nil {
			return nil, err
		}
		out[wellknown.Fault] = f
	}
	for _, name := range disabled {
		d, err := disabledFilter()
		if err != nil {
			return nil, err
		}
		out[name] = d
	}
	return out, nil
}

// FilterScope is what a route's typed_per_filter_config depends on besides
// the route itself: the wasm filters of the listener whose routes it is in,
// and the header its gRPC model routes select a model by. The zero scope
// (no wasm filters) disables nothing.
type FilterScope struct {
	// Fanout and SLO are the names of the listener's filters of each
	// kind, "" when it has none.
	Fanout, SLO string
	// ModelHeader is the model header of the fanout filter's model
	// routing (ModelRoutingConfig), "" when no route selects a model.
	ModelHeader string
}

// FilterScopeOf returns the filter scope of l's routes. Only listeners
// whose routes come over RDS carry the wasm filters (HTTPFilters).
func FilterScopeOf(l *model.Listener) FilterScope {
	var s FilterScope
	if l.InlineRoutes() {
		return s
	}
	for _, f := range l.Filters {
		switch f.Kind {
		case model.FilterFanout:
			s.Fanout = f.Name
		case model.FilterSLO:
			s.SLO = f.Name
		}
	}
	if s.Fanout != "" {
		s.ModelHeader = modelHeader(&l.Routes)
	}
	return s
}

// modelHeader is the header of rc's first gRPC model route, the one
// ModelRoutingConfig gives the fanout filter, or "".
func modelHeader(rc *model.RouteConfig) string {
	for _, vh := range rc.VirtualHosts {
		for i := range vh.Routes {
			if header, _, _, ok := modelMatch(&vh.Routes[i].Match); ok {
				return header
			}
		}
	}
	return ""
}

// disabledFilters returns the wasm filters of s that have nothing to do on
// r, for its typed_per_filter_config: Envoy then leaves them
// out of the filter chain of every stream whose route, when the chain is
// built, is r (see disabledFilter).
//
// Envoy builds a stream's chain once, right after the request headers
// first select a route, and a filter that changes headers later (fanout
// setting the model header) re-selects only the router's route, not the
// chain. So a filter may be disabled on r only if every request that
// first lands on r stays there, or needs the filter on none of the routes
// it may end on:
//   - fanout, when r has no fan-out settings (ensemble, compared shadows)
//     and no request on r is one the filter routes by model (reroutable);
//   - slo, when r has no SLO and no request on r is rerouted: the filter
//     meters only the routes its objectives name (the translator names
//     every objective's route, SLOConfig), and reads the route when the
//     response starts, so a request rerouted to an SLO route needs it.
func disabledFilters(r *model.Route, s FilterScope) []string {
	var out []string
	moves := reroutable(r, s)
	if _, fans := fanoutRoute(r); s.Fanout != "" && !fans && !moves {
		out = append(out, s.Fanout)
	}
	if s.SLO != "" && r.Action.SLO == nil && !moves {
		out = append(out, s.SLO)
	}
	return out
}

// reroutable reports whether the fanout filter may route a request that
// first lands on r anew: a gRPC call to a per-model method (ModelInfer,
// ModelReady, ModelMetadata, all under model.OIPModelMethodPrefix)
// without the model header, for which the filter sets the header from the
// message. A route that requires the header never sees one; nor does a
// route whose path match cannot take a per-model method's path. Other
// header matches are not relied on (conservative).
func reroutable(r *model.Route, s FilterScope) bool {
	if s.Fanout == "" || s.ModelHeader == "" {
		return false
	}
	m := &r.Match
	if header, _, _, ok := modelMatch(m); ok && header == s.ModelHeader {
		return false
	}
	const p = model.OIPModelMethodPrefix
	switch {
	case m.Path != "":
		return strings.HasPrefix(m.Path, p)
	case m.SeparatedPrefix != "":
		// The path itself or the path and "/...": a subset of what the
		// plain prefix takes.
		return strings.HasPrefix(m.SeparatedPrefix, p) || strings.HasPrefix(p, m.SeparatedPrefix)
	default:
		return strings.HasPrefix(m.Prefix, p) || strings.HasPrefix(p, m.Prefix)
	}
}

// disabledFilter is the typed_per_filter_config value that disables a
// filter on a route: envoy.config.route.v3.FilterConfig with disabled set
// (route_components.proto: a disabled filter's config is ignored, and
// Envoy's RouteEntryImplBase::filterDisabled asks the route, then its
// virtual host).
func disabledFilter() (*anypb.Any, error) {
	return anyOf(&routev3.FilterConfig{Disabled: true})
}
