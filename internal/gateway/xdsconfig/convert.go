package xdsconfig

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3" // Router, unpacked by the field walk
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Filter names and type URLs the gateway implements.
const (
	RouterFilter   = "envoy.filters.http.router"
	FaultFilter    = "envoy.filters.http.fault"
	HCMFilter      = "envoy.filters.network.http_connection_manager"
	WasmTypeURL    = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
	httpOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// Envoy's defaults for fields the translator leaves unset.
const (
	defaultRouteTimeout    = 15 * time.Second
	defaultConnectTimeout  = 5 * time.Second
	default5xx             = 5
	defaultInterval        = 10 * time.Second
	defaultBaseEjection    = 30 * time.Second
	defaultMaxEjectionPerc = 10
)

// Resource is one decoded resource: its name and one of *Listener,
// *RouteConfig, *Cluster, *Endpoints, *WasmFilter.
type Resource struct {
	Name  string
	Value any
}

// Decode unpacks one resource of the xDS type typeURL, checks it against
// the implemented fields and converts it. The error names the resource and
// the field.
func Decode(typeURL string, a *anypb.Any) (Resource, error) {
	var msg proto.Message
	switch typeURL {
	case resource.ListenerType:
		msg = &listenerv3.Listener{}
	case resource.RouteType:
		msg = &routev3.RouteConfiguration{}
	case resource.ClusterType:
		msg = &clusterv3.Cluster{}
	case resource.EndpointType:
		msg = &endpointv3.ClusterLoadAssignment{}
	case resource.ExtensionConfigType:
		msg = &corev3.TypedExtensionConfig{}
	case resource.SecretType:
		msg = &tlsv3.Secret{}
	default:
		return Resource{}, fmt.Errorf("type %s unsupported", typeURL)
	}
	if a.GetTypeUrl() != typeURL {
		return Resource{}, fmt.Errorf("resource of type %s in a %s response", a.GetTypeUrl(), typeURL)
	}
	if err := a.UnmarshalTo(msg); err != nil {
		return Resource{}, fmt.Errorf("decode %s: %w", typeURL, err)
	}
	return DecodeMessage(msg)
}

// DecodeMessage checks and converts one resource message.
func DecodeMessage(msg proto.Message) (Resource, error) {
	var (
		r    Resource
		kind string
		err  error
	)
	switch m := msg.(type) {
	case *listenerv3.Listener:
		kind, r.Name = "listener", m.GetName()
		if err = checkFields(m.ProtoReflect()); err == nil {
			r.Value, err = convertListener(m)
		}
	case *routev3.RouteConfiguration:
		kind, r.Name = "route config", m.GetName()
		if err = checkFields(m.ProtoReflect()); err == nil {
			r.Value, err = convertRoutes(m)
		}
	case *clusterv3.Cluster:
		kind, r.Name = "cluster", m.GetName()
		if err = checkFields(m.ProtoReflect()); err == nil {
			r.Value, err = convertCluster(m)
		}
	case *endpointv3.ClusterLoadAssignment:
		kind, r.Name = "endpoints", m.GetClusterName()
		if err = checkFields(m.ProtoReflect()); err == nil {
			var hosts []Endpoint
			hosts, err = convertEndpoints(m)
			r.Value = &Endpoints{Cluster: m.GetClusterName(), Hosts: hosts}
		}
	case *tlsv3.Secret:
		kind, r.Name = "secret", m.GetName()
		if err = checkFields(m.ProtoReflect()); err == nil {
			r.Value, err = convertSecret(m)
		}
	case *corev3.TypedExtensionConfig:
		kind, r.Name = "filter config", m.GetName()
		if err = checkFields(m.ProtoReflect()); err == nil {
			r.Value, err = convertWasm(m)
		}
	default:
		return Resource{}, fmt.Errorf("message %T unsupported", msg)
	}
	if err != nil {
		return Resource{}, fmt.Errorf("%s %q: %w", kind, r.Name, err)
	}
	if r.Name == "" {
		return Resource{}, fmt.Errorf("%s: a name is required", kind)
	}
	return r, nil
}

func fieldErr(path, format string, args ...any) error {
	return &FieldError{Path: path, Reason: fmt.Sprintf(format, args...)}
}

func convertListener(l *listenerv3.Listener) (*Listener, error) {
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil {
		return nil, fieldErr("address", "needs a socket_address")
	}
	out := &Listener{Name: l.GetName(), Address: net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))}
	if len(l.GetFilterChains()) != 1 || len(l.GetFilterChains()[0].GetFilters()) != 1 {
		return nil, fieldErr("filter_chains", "must hold one chain with one filter (the HTTP connection manager)")
	}
	f := l.GetFilterChains()[0].GetFilters()[0]
	path := "filter_chains[0].filters[" + elemName(f.ProtoReflect(), 0) + "]"
	if f.GetName() != HCMFilter {
		return nil, fieldErr(path+".name", "%q unsupported: want %s", f.GetName(), HCMFilter)
	}
	m := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(m); err != nil {
		return nil, fieldErr(path+".typed_config", "%v", err)
	}
	path += ".typed_config"
	switch m.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO:
		out.Codec = CodecAuto
	case hcmv3.HttpConnectionManager_HTTP1:
		out.Codec = CodecHTTP1
	case hcmv3.HttpConnectionManager_HTTP2:
		out.Codec = CodecHTTP2
	default:
		return nil, fieldErr(path+".codec_type", "%v unsupported", m.GetCodecType())
	}
	out.StatPrefix = m.GetStatPrefix()
	if out.StatPrefix == "" {
		return nil, fieldErr(path+".stat_prefix", "is required")
	}
	if err := checkADS(m.GetRds().GetConfigSource(), path+".rds.config_source"); err != nil {
		return nil, err
	}
	if out.RouteConfig = m.GetRds().GetRouteConfigName(); out.RouteConfig == "" {
		return nil, fieldErr(path+".rds.route_config_name", "is required")
	}
	filters := m.GetHttpFilters()
	if len(filters) == 0 || filters[len(filters)-1].GetName() != RouterFilter {
		return nil, fieldErr(path+".http_filters", "must end with %s", RouterFilter)
	}
	for i, hf := range filters[:len(filters)-1] {
		fp := fmt.Sprintf("%s.http_filters[%s]", path, elemName(hf.ProtoReflect(), i))
		conv, err := convertHTTPFilter(hf, fp)
		if err != nil {
			return nil, err
		}
		out.Filters = append(out.Filters, conv)
	}
	if last := filters[len(filters)-1]; last.GetConfigDiscovery() != nil || last.GetTypedConfig().MessageName() != "envoy.extensions.filters.http.router.v3.Router" {
		return nil, fieldErr(path+".http_filters["+RouterFilter+"]", "must carry a Router typed_config")
	}
	if t := m.GetTracing(); t != nil {
		tr, err := convertTracing(t, path+".tracing")
		if err != nil {
			return nil, err
		}
		out.Tracing = tr
	}
	return out, nil
}

func convertHTTPFilter(hf *hcmv3.HttpFilter, path string) (HTTPFilter, error) {
	if cd := hf.GetConfigDiscovery(); cd != nil {
		if err := checkADS(cd.GetConfigSource(), path+".config_discovery.config_source"); err != nil {
			return HTTPFilter{}, err
		}
		if len(cd.GetTypeUrls()) != 1 || cd.GetTypeUrls()[0] != WasmTypeURL {
			return HTTPFilter{}, fieldErr(path+".config_discovery.type_urls", "%v unsupported: want [%s]", cd.GetTypeUrls(), WasmTypeURL)
		}
		return HTTPFilter{Name: hf.GetName(), Kind: FilterWasm}, nil
	}
	tc := hf.GetTypedConfig()
	fault := &faultv3.HTTPFault{}
	if tc == nil || !tc.MessageIs(fault) {
		return HTTPFilter{}, fieldErr(path+".typed_config", "unsupported: only %s may precede the router statically", FaultFilter)
	}
	if err := tc.UnmarshalTo(fault); err != nil {
		return HTTPFilter{}, fieldErr(path+".typed_config", "%v", err)
	}
	f, err := convertFault(fault, path+".typed_config")
	if err != nil {
		return HTTPFilter{}, err
	}
	return HTTPFilter{Name: hf.GetName(), Kind: FilterFault, Fault: f}, nil
}

func convertFault(f *faultv3.HTTPFault, path string) (*Fault, error) {
	out := &Fault{AbortGRPC: -1}
	if d := f.GetDelay(); d != nil {
		if d.GetFixedDelay() == nil {
			return nil, fieldErr(path+".delay", "needs fixed_delay")
		}
		out.HasDelay, out.Delay = true, d.GetFixedDelay().AsDuration()
		pm, err := perMillion(d.GetPercentage(), path+".delay.percentage")
		if err != nil {
			return nil, err
		}
		out.DelayPerMil = pm
	}
	if a := f.GetAbort(); a != nil {
		out.HasAbort = true
		switch {
		case a.GetHttpStatus() != 0:
			out.AbortHTTP = int(a.GetHttpStatus())
			if out.AbortHTTP < 200 || out.AbortHTTP >= 600 {
				return nil, fieldErr(path+".abort.http_status", "%d out of range", out.AbortHTTP)
			}
		case a.GetErrorType() != nil:
			if _, ok := a.GetErrorType().(*faultv3.FaultAbort_GrpcStatus); !ok {
				return nil, fieldErr(path+".abort", "needs http_status or grpc_status")
			}
			out.AbortGRPC = int(a.GetGrpcStatus())
		default:
			return nil, fieldErr(path+".abort", "needs http_status or grpc_status")
		}
		pm, err := perMillion(a.GetPercentage(), path+".abort.percentage")
		if err != nil {
			return nil, err
		}
		out.AbortPerMil = pm
	}
	return out, nil
}

// perMillion converts a FractionalPercent to parts per million; unset is
// 0%, as Envoy's fault filter reads a missing percentage.
func perMillion(p *typev3.FractionalPercent, path string) (uint32, error) {
	if p == nil {
		return 0, nil
	}
	n := uint64(p.GetNumerator())
	switch p.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		n *= 10000
	case typev3.FractionalPercent_TEN_THOUSAND:
		n *= 100
	case typev3.FractionalPercent_MILLION:
	default:
		return 0, fieldErr(path+".denominator", "%v unsupported", p.GetDenominator())
	}
	return uint32(min(n, 1_000_000)), nil
}

func convertTracing(t *hcmv3.HttpConnectionManager_Tracing, path string) (*Tracing, error) {
	out := &Tracing{SamplePercent: 100}
	if rs := t.GetRandomSampling(); rs != nil {
		out.SamplePercent = rs.GetValue()
	}
	p := t.GetProvider()
	if p == nil {
		return nil, fieldErr(path+".provider", "is required")
	}
	otel := &tracev3.OpenTelemetryConfig{}
	if err := p.GetTypedConfig().UnmarshalTo(otel); err != nil {
		return nil, fieldErr(path+".provider.typed_config", "%v", err)
	}
	if out.Cluster = otel.GetGrpcService().GetEnvoyGrpc().GetClusterName(); out.Cluster == "" {
		return nil, fieldErr(path+".provider.typed_config.grpc_service", "needs envoy_grpc.cluster_name")
	}
	out.ServiceName = otel.GetServiceName()
	return out, nil
}

func checkADS(cs *corev3.ConfigSource, path string) error {
	if cs.GetAds() == nil {
		return fieldErr(path, "must be ads")
	}
	if cs.GetResourceApiVersion() != corev3.ApiVersion_V3 {
		return fieldErr(path+".resource_api_version", "%v unsupported", cs.GetResourceApiVersion())
	}
	return nil
}

func convertRoutes(rc *routev3.RouteConfiguration) (*RouteConfig, error) {
	out := &RouteConfig{Name: rc.GetName()}
	for i, vh := range rc.GetVirtualHosts() {
		vp := fmt.Sprintf("virtual_hosts[%s]", elemName(vh.ProtoReflect(), i))
		v := VirtualHost{Name: vh.GetName(), Domains: vh.GetDomains()}
		if len(v.Domains) == 0 {
			return nil, fieldErr(vp+".domains", "is required")
		}
		for j, r := range vh.GetRoutes() {
			rp := fmt.Sprintf("%s.routes[%s]", vp, elemName(r.ProtoReflect(), j))
			conv, err := convertRoute(r, rp)
			if err != nil {
				return nil, err
			}
			v.Routes = append(v.Routes, conv)
		}
		out.VirtualHosts = append(out.VirtualHosts, v)
	}
	return out, nil
}

func convertRoute(r *routev3.Route, path string) (Route, error) {
	out := Route{Name: r.GetName()}
	m := r.GetMatch()
	switch {
	case m.GetPath() != "":
		out.Match.Path = m.GetPath()
	case m.GetSafeRegex() != nil:
		re, err := compile(m.GetSafeRegex().GetRegex(), false)
		if err != nil {
			return out, fieldErr(path+".match.safe_regex.regex", "%v", err)
		}
		out.Match.Regex = re
	case m.GetPathSeparatedPrefix() != "":
		sp := m.GetPathSeparatedPrefix()
		if strings.HasSuffix(sp, "/") || strings.ContainsAny(sp, "?#") {
			// Envoy's validation refuses them too.
			return out, fieldErr(path+".match.path_separated_prefix", "%q must not end with / nor hold ? or #", sp)
		}
		out.Match.SeparatedPrefix = sp
	case m.GetPathSpecifier() != nil:
		out.Match.Prefix = m.GetPrefix()
	default:
		return out, fieldErr(path+".match", "needs path, prefix or safe_regex")
	}
	out.Match.GRPC = m.GetGrpc() != nil
	for i, h := range m.GetHeaders() {
		hp := fmt.Sprintf("%s.match.headers[%d]", path, i)
		hm := HeaderMatch{Name: strings.ToLower(h.GetName()), Invert: h.GetInvertMatch()}
		switch {
		case h.GetStringMatch() != nil:
			sm, err := convertString(h.GetStringMatch(), hp+".string_match")
			if err != nil {
				return out, err
			}
			hm.String = sm
		case h.GetHeaderMatchSpecifier() != nil:
			pm := h.GetPresentMatch()
			hm.Present = &pm
		default:
			// An empty HeaderMatcher matches presence in Envoy.
			t := true
			hm.Present = &t
		}
		out.Match.Headers = append(out.Match.Headers, hm)
	}
	a := r.GetRoute()
	if a == nil {
		return out, fieldErr(path+".route", "is required (redirects and direct responses are unsupported)")
	}
	ap := path + ".route"
	switch {
	case a.GetCluster() != "":
		out.Action.Clusters = []WeightedCluster{{Name: a.GetCluster(), Weight: 1}}
	case a.GetWeightedClusters() != nil:
		var total uint32
		for _, c := range a.GetWeightedClusters().GetClusters() {
			w := c.GetWeight().GetValue()
			total += w
			out.Action.Clusters = append(out.Action.Clusters, WeightedCluster{Name: c.GetName(), Weight: w})
		}
		if total == 0 {
			return out, fieldErr(ap+".weighted_clusters", "weights sum to 0")
		}
	default:
		return out, fieldErr(ap, "needs cluster or weighted_clusters")
	}
	out.Action.Timeout = defaultRouteTimeout
	if a.GetTimeout() != nil {
		out.Action.Timeout = a.GetTimeout().AsDuration()
	}
	if rp := a.GetRetryPolicy(); rp != nil {
		retry, err := convertRetry(rp, ap+".retry_policy")
		if err != nil {
			return out, err
		}
		out.Action.Retry = retry
	}
	for i, mp := range a.GetRequestMirrorPolicies() {
		mir := Mirror{Cluster: mp.GetCluster(), PerMillion: 1_000_000}
		if mir.Cluster == "" {
			return out, fieldErr(fmt.Sprintf("%s.request_mirror_policies[%d].cluster", ap, i), "is required")
		}
		if rf := mp.GetRuntimeFraction(); rf != nil {
			// The gateway has no runtime layers (nor has Envoy's
			// bootstrap a non-empty one), so the default value applies.
			pm, err := perMillion(rf.GetDefaultValue(), fmt.Sprintf("%s.request_mirror_policies[%d].runtime_fraction.default_value", ap, i))
			if err != nil {
				return out, err
			}
			mir.PerMillion = pm
		}
		out.Action.Mirrors = append(out.Action.Mirrors, mir)
	}
	for name, cfg := range r.GetTypedPerFilterConfig() {
		fp := fmt.Sprintf("%s.typed_per_filter_config[%s]", path, name)
		if cfg.MessageIs((*routev3.FilterConfig)(nil)) {
			fc := &routev3.FilterConfig{}
			if err := cfg.UnmarshalTo(fc); err != nil {
				return out, fieldErr(fp, "%v", err)
			}
			// The field walk let only disabled through; a FilterConfig
			// that does not disable configures nothing the gateway has.
			if !fc.GetDisabled() {
				return out, fieldErr(fp+".disabled", "false unsupported (only disabled: true is implemented)")
			}
			if out.Disabled == nil {
				out.Disabled = make(map[string]bool)
			}
			out.Disabled[name] = true
			continue
		}
		f := &faultv3.HTTPFault{}
		if err := cfg.UnmarshalTo(f); err != nil {
			return out, fieldErr(fp, "%v", err)
		}
		conv, err := convertFault(f, fp)
		if err != nil {
			return out, err
		}
		if out.Faults == nil {
			out.Faults = make(map[string]*Fault)
		}
		out.Faults[name] = conv
	}
	return out, nil
}

// grpcRetryOn maps Envoy's gRPC retry_on names to status codes.
var grpcRetryOn = map[string]int{
	"cancelled": 1, "deadline-exceeded": 4, "resource-exhausted": 8, "internal": 13, "unavailable": 14,
}

func convertRetry(rp *routev3.RetryPolicy, path string) (*Retry, error) {
	out := &Retry{NumRetries: 1}
	if rp.GetNumRetries() != nil {
		out.NumRetries = int(rp.GetNumRetries().GetValue())
	}
	if rp.GetPerTryTimeout() != nil {
		out.PerTryTimeout = rp.GetPerTryTimeout().AsDuration()
	}
	for _, c := range strings.Split(rp.GetRetryOn(), ",") {
		switch c = strings.TrimSpace(c); c {
		case "":
		case "5xx":
			out.On.FiveXX = true
		case "gateway-error":
			out.On.GatewayError = true
		case "connect-failure":
			out.On.ConnectFailure = true
		case "reset":
			out.On.Reset = true
		case "refused-stream":
			out.On.RefusedStream = true
		case "retriable-4xx":
			out.On.Retriable4xx = true
		default:
			code, ok := grpcRetryOn[c]
			if !ok {
				return nil, fieldErr(path+".retry_on", "condition %q unsupported", c)
			}
			if out.On.GRPC == nil {
				out.On.GRPC = make(map[int]bool)
			}
			out.On.GRPC[code] = true
		}
	}
	return out, nil
}

func convertString(sm *matcherv3.StringMatcher, path string) (*StringMatch, error) {
	out := &StringMatch{IgnoreCase: sm.GetIgnoreCase()}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		out.Exact = &p.Exact
	case *matcherv3.StringMatcher_Prefix:
		out.Prefix = &p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		out.Suffix = &p.Suffix
	case *matcherv3.StringMatcher_Contains:
		out.Contains = &p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compile(p.SafeRegex.GetRegex(), sm.GetIgnoreCase())
		if err != nil {
			return nil, fieldErr(path+".safe_regex.regex", "%v", err)
		}
		out.Regex = re
	default:
		return nil, fieldErr(path, "needs a match pattern")
	}
	return out, nil
}

// compile anchors re: Envoy's safe_regex must match the whole value.
func compile(re string, ignoreCase bool) (*regexp.Regexp, error) {
	flags := ""
	if ignoreCase {
		flags = "(?i)"
	}
	return regexp.Compile(flags + "^(?:" + re + ")$")
}

func convertCluster(c *clusterv3.Cluster) (*Cluster, error) {
	out := &Cluster{Name: c.GetName(), ConnectTimeout: defaultConnectTimeout, Limits: DefaultLimits}
	switch c.GetType() {
	case clusterv3.Cluster_EDS:
		out.Kind = ClusterEDS
		if err := checkADS(c.GetEdsClusterConfig().GetEdsConfig(), "eds_cluster_config.eds_config"); err != nil {
			return nil, err
		}
		out.EDSName = c.GetEdsClusterConfig().GetServiceName()
		if out.EDSName == "" {
			out.EDSName = c.GetName()
		}
	case clusterv3.Cluster_STATIC:
		out.Kind = ClusterStatic
	case clusterv3.Cluster_STRICT_DNS:
		out.Kind = ClusterStrictDNS
	default:
		return nil, fieldErr("type", "%v unsupported", c.GetType())
	}
	if out.Kind != ClusterEDS {
		if c.GetEdsClusterConfig() != nil {
			return nil, fieldErr("eds_cluster_config", "only for EDS clusters")
		}
		hosts, err := convertEndpoints(c.GetLoadAssignment())
		if err != nil {
			return nil, fmt.Errorf("load_assignment: %w", err)
		}
		out.Endpoints = hosts
	} else if c.GetLoadAssignment() != nil {
		return nil, fieldErr("load_assignment", "unsupported on an EDS cluster")
	}
	switch c.GetDnsLookupFamily() {
	case clusterv3.Cluster_AUTO:
	case clusterv3.Cluster_V4_PREFERRED:
		out.IPv4First = true
	case clusterv3.Cluster_V4_ONLY:
		out.IPv4First, out.IPv4Only = true, true
	default:
		return nil, fieldErr("dns_lookup_family", "%v unsupported", c.GetDnsLookupFamily())
	}
	if c.GetConnectTimeout() != nil {
		out.ConnectTimeout = c.GetConnectTimeout().AsDuration()
	}
	for k, v := range c.GetTypedExtensionProtocolOptions() {
		if k != httpOptionsKey {
			return nil, fieldErr("typed_extension_protocol_options["+k+"]", "unsupported")
		}
		o := &upstreamhttpv3.HttpProtocolOptions{}
		if err := v.UnmarshalTo(o); err != nil {
			return nil, fieldErr("typed_extension_protocol_options["+k+"]", "%v", err)
		}
		out.HTTP2 = o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
	}
	if ts := c.GetTransportSocket(); ts != nil {
		t, err := convertUpstreamTLS(ts)
		if err != nil {
			return nil, err
		}
		out.TLS = t
	}
	switch hcs := c.GetHealthChecks(); len(hcs) {
	case 0:
	case 1:
		hc, err := convertHealthCheck(hcs[0])
		if err != nil {
			return nil, err
		}
		out.HealthCheck = hc
	default:
		return nil, fieldErr("health_checks", "more than one unsupported")
	}
	if cb := c.GetCircuitBreakers(); cb != nil {
		if len(cb.GetThresholds()) != 1 {
			return nil, fieldErr("circuit_breakers.thresholds", "need exactly one (default priority)")
		}
		t := cb.GetThresholds()[0]
		set := func(dst *int, v *wrapperspb.UInt32Value) {
			if v != nil {
				*dst = int(v.GetValue())
			}
		}
		set(&out.Limits.MaxConnections, t.GetMaxConnections())
		set(&out.Limits.MaxPendingRequests, t.GetMaxPendingRequests())
		set(&out.Limits.MaxRequests, t.GetMaxRequests())
		set(&out.Limits.MaxRetries, t.GetMaxRetries())
	}
	if od := c.GetOutlierDetection(); od != nil {
		o := &Outlier{Consecutive5xx: default5xx, Interval: defaultInterval, BaseEjectionTime: defaultBaseEjection, MaxEjectionPercent: defaultMaxEjectionPerc}
		if od.GetConsecutive_5Xx() != nil {
			o.Consecutive5xx = int(od.GetConsecutive_5Xx().GetValue())
		}
		o.Interval = durOr(od.GetInterval(), o.Interval)
		o.BaseEjectionTime = durOr(od.GetBaseEjectionTime(), o.BaseEjectionTime)
		if od.GetMaxEjectionPercent() != nil {
			o.MaxEjectionPercent = int(od.GetMaxEjectionPercent().GetValue())
		}
		out.Outlier = o
	}
	return out, nil
}

func convertHealthCheck(hc *corev3.HealthCheck) (*HealthCheck, error) {
	out := &HealthCheck{
		Timeout: durOr(hc.GetTimeout(), 0), Interval: durOr(hc.GetInterval(), 0),
		UnhealthyThreshold: int(hc.GetUnhealthyThreshold().GetValue()), HealthyThreshold: int(hc.GetHealthyThreshold().GetValue()),
	}
	if out.Timeout <= 0 || out.Interval <= 0 {
		return nil, fieldErr("health_checks[0]", "timeout and interval are required")
	}
	out.UnhealthyThreshold = max(out.UnhealthyThreshold, 1)
	out.HealthyThreshold = max(out.HealthyThreshold, 1)
	switch {
	case hc.GetGrpcHealthCheck() != nil:
		out.GRPC, out.GRPCService = true, hc.GetGrpcHealthCheck().GetServiceName()
	case hc.GetHttpHealthCheck() != nil:
		out.HTTPPath = hc.GetHttpHealthCheck().GetPath()
		if out.HTTPPath == "" {
			return nil, fieldErr("health_checks[0].http_health_check.path", "is required")
		}
	default:
		return nil, fieldErr("health_checks[0]", "needs grpc_health_check or http_health_check")
	}
	return out, nil
}

func convertEndpoints(cla *endpointv3.ClusterLoadAssignment) ([]Endpoint, error) {
	var out []Endpoint
	for i, le := range cla.GetEndpoints() {
		for j, lb := range le.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil || sa.GetAddress() == "" || sa.GetPortValue() == 0 {
				return nil, fieldErr(fmt.Sprintf("endpoints[%d].lb_endpoints[%d].endpoint.address", i, j), "needs a socket address and port")
			}
			w := uint32(1)
			if lb.GetLoadBalancingWeight() != nil {
				w = lb.GetLoadBalancingWeight().GetValue()
			}
			out = append(out, Endpoint{Host: sa.GetAddress(), Port: int(sa.GetPortValue()), Weight: w})
		}
	}
	return out, nil
}

func convertWasm(tc *corev3.TypedExtensionConfig) (*WasmFilter, error) {
	w := &wasmfilterv3.Wasm{}
	if err := tc.GetTypedConfig().UnmarshalTo(w); err != nil {
		return nil, fieldErr("typed_config", "%v", err)
	}
	pc := w.GetConfig()
	out := &WasmFilter{
		Name: tc.GetName(), PluginName: pc.GetName(), RootID: pc.GetRootId(), FailOpen: pc.GetFailOpen(), //nolint:staticcheck // Envoy still honours the deprecated fail_open, so the gateway reads it too
		AllowOnHeadersStopIteration: pc.GetAllowOnHeadersStopIteration().GetValue(),
	}
	vm := pc.GetVmConfig()
	if vm == nil {
		return nil, fieldErr("typed_config.config.vm_config", "is required")
	}
	out.VMID, out.Runtime = vm.GetVmId(), vm.GetRuntime()
	switch code := vm.GetCode(); {
	case code.GetLocal() != nil:
		if code.GetLocal().GetInlineBytes() != nil {
			return nil, fieldErr("typed_config.config.vm_config.code.local.inline_bytes", "unsupported: name a file")
		}
		if out.LocalFile = code.GetLocal().GetFilename(); out.LocalFile == "" {
			return nil, fieldErr("typed_config.config.vm_config.code.local.filename", "is required")
		}
	case code.GetRemote() != nil:
		r := code.GetRemote()
		out.Remote = &RemoteCode{URI: r.GetHttpUri().GetUri(), Cluster: r.GetHttpUri().GetCluster(),
			Timeout: durOr(r.GetHttpUri().GetTimeout(), 0), SHA256: r.GetSha256()}
		if out.Remote.URI == "" || out.Remote.Cluster == "" || out.Remote.SHA256 == "" {
			return nil, fieldErr("typed_config.config.vm_config.code.remote", "needs http_uri.uri, http_uri.cluster and sha256")
		}
	default:
		return nil, fieldErr("typed_config.config.vm_config.code", "needs local or remote")
	}
	if c := pc.GetConfiguration(); c != nil {
		sv := &wrapperspb.StringValue{}
		if err := c.UnmarshalTo(sv); err != nil {
			return nil, fieldErr("typed_config.config.configuration", "%v", err)
		}
		out.Configuration = []byte(sv.GetValue())
	}
	return out, nil
}

func durOr(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.AsDuration()
}

// ErrUnsupported is wrapped by errors about a field the gateway lacks.
var ErrUnsupported = errors.New("unsupported")

// Is makes errors.Is(err, ErrUnsupported) hold for field errors.
func (e *FieldError) Is(target error) bool { return target == ErrUnsupported }
