package xdsconfig

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// implemented lists, per message, the fields the gateway acts on. Any other
// populated field makes the resource fail with the field's path: a field the
// gateway would silently ignore would make it behave unlike Envoy with no
// one noticing. Adding a field here is a promise that the converter in this
// package and the data plane honour it.
var implemented = map[protoreflect.FullName][]string{
	// LDS
	"envoy.config.listener.v3.Listener":    {"name", "address", "filter_chains"},
	"envoy.config.core.v3.Address":         {"socket_address"},
	"envoy.config.core.v3.SocketAddress":   {"address", "port_value"},
	"envoy.config.listener.v3.FilterChain": {"filters"},
	"envoy.config.listener.v3.Filter":      {"name", "typed_config"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": {
		"codec_type", "stat_prefix", "rds", "http_filters", "tracing",
	},
	"envoy.extensions.filters.network.http_connection_manager.v3.Rds":        {"config_source", "route_config_name"},
	"envoy.config.core.v3.ConfigSource":                                      {"ads", "resource_api_version"},
	"envoy.config.core.v3.AggregatedConfigSource":                            {},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter": {"name", "typed_config", "config_discovery"},
	"envoy.config.core.v3.ExtensionConfigSource":                             {"config_source", "type_urls"},
	"envoy.extensions.filters.http.router.v3.Router":                         {},
	"envoy.extensions.filters.http.fault.v3.HTTPFault":                       {"delay", "abort"},
	"envoy.extensions.filters.common.fault.v3.FaultDelay":                    {"fixed_delay", "percentage"},
	"envoy.extensions.filters.http.fault.v3.FaultAbort":                      {"http_status", "grpc_status", "percentage"},
	"envoy.type.v3.FractionalPercent":                                        {"numerator", "denominator"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing": {
		"random_sampling", "provider",
	},
	"envoy.type.v3.Percent":                                  {"value"},
	"envoy.config.trace.v3.Tracing.Http":                     {"name", "typed_config"},
	"envoy.config.trace.v3.OpenTelemetryConfig":              {"grpc_service", "service_name"},
	"envoy.config.core.v3.GrpcService":                       {"envoy_grpc"},
	"envoy.config.core.v3.GrpcService.EnvoyGrpc":             {"cluster_name"},
	"google.protobuf.Duration":                               {"seconds", "nanos"},
	"google.protobuf.UInt32Value":                            {"value"},
	"google.protobuf.BoolValue":                              {"value"},
	"google.protobuf.StringValue":                            {"value"},
	"envoy.config.route.v3.RouteConfiguration":               {"name", "virtual_hosts"},
	"envoy.config.route.v3.VirtualHost":                      {"name", "domains", "routes"},
	"envoy.config.route.v3.Route":                            {"name", "match", "route", "typed_per_filter_config"},
	"envoy.config.route.v3.FilterConfig":                     {"disabled"}, // config and is_optional are NACKed
	"envoy.config.route.v3.RouteMatch":                       {"path", "prefix", "path_separated_prefix", "safe_regex", "headers", "grpc"},
	"envoy.config.route.v3.RouteMatch.GrpcRouteMatchOptions": {},
	"envoy.config.route.v3.HeaderMatcher":                    {"name", "string_match", "present_match", "invert_match"},
	"envoy.type.matcher.v3.StringMatcher":                    {"exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"},
	"envoy.type.matcher.v3.RegexMatcher":                     {"regex", "google_re2"},
	"envoy.type.matcher.v3.RegexMatcher.GoogleRE2":           {},
	"envoy.config.route.v3.RouteAction": {
		"cluster", "weighted_clusters", "timeout", "retry_policy", "request_mirror_policies",
	},
	"envoy.config.route.v3.WeightedCluster":                 {"clusters"},
	"envoy.config.route.v3.WeightedCluster.ClusterWeight":   {"name", "weight"},
	"envoy.config.route.v3.RetryPolicy":                     {"retry_on", "num_retries", "per_try_timeout"},
	"envoy.config.route.v3.RouteAction.RequestMirrorPolicy": {"cluster", "runtime_fraction"},
	"envoy.config.core.v3.RuntimeFractionalPercent":         {"default_value", "runtime_key"},
	"envoy.config.cluster.v3.Cluster": {
		"name", "type", "eds_cluster_config", "connect_timeout", "typed_extension_protocol_options",
		"health_checks", "circuit_breakers", "outlier_detection", "load_assignment", "dns_lookup_family",
		"transport_socket",
	},
	"envoy.config.core.v3.TransportSocket":                         {"name", "typed_config"},
	"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext": {"common_tls_context"},
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext":   {"tls_certificate_sds_secret_configs", "combined_validation_context"},
	"envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig":    {"name", "sds_config"},
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.CombinedCertificateValidationContext": {
		"default_validation_context", "validation_context_sds_secret_config",
	},
	"envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext":    {"trusted_ca", "match_typed_subject_alt_names"},
	"envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher":           {"san_type", "matcher"},
	"envoy.extensions.transport_sockets.tls.v3.Secret":                          {"name", "tls_certificate", "validation_context"},
	"envoy.extensions.transport_sockets.tls.v3.TlsCertificate":                  {"certificate_chain", "private_key"},
	"envoy.config.cluster.v3.Cluster.EdsClusterConfig":                          {"eds_config", "service_name"},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":                    {"explicit_http_config"},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig": {"http_protocol_options", "http2_protocol_options"},
	"envoy.config.core.v3.Http1ProtocolOptions":                                 {},
	"envoy.config.core.v3.Http2ProtocolOptions":                                 {},
	"envoy.config.core.v3.HealthCheck": {
		"timeout", "interval", "unhealthy_threshold", "healthy_threshold", "grpc_health_check", "http_health_check",
	},
	"envoy.config.core.v3.HealthCheck.GrpcHealthCheck":   {"service_name"},
	"envoy.config.core.v3.HealthCheck.HttpHealthCheck":   {"path"},
	"envoy.config.cluster.v3.CircuitBreakers":            {"thresholds"},
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds": {"max_connections", "max_pending_requests", "max_requests", "max_retries"},
	"envoy.config.cluster.v3.OutlierDetection":           {"consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent"},
	"envoy.config.endpoint.v3.ClusterLoadAssignment":     {"cluster_name", "endpoints"},
	"envoy.config.endpoint.v3.LocalityLbEndpoints":       {"locality", "lb_endpoints", "load_balancing_weight"},
	"envoy.config.core.v3.Locality":                      {"region", "zone", "sub_zone"},
	"envoy.config.endpoint.v3.LbEndpoint":                {"endpoint", "load_balancing_weight"},
	"envoy.config.endpoint.v3.Endpoint":                  {"address"},
	"envoy.config.core.v3.TypedExtensionConfig":          {"name", "typed_config"},
	"envoy.extensions.filters.http.wasm.v3.Wasm":         {"config"},
	"envoy.extensions.wasm.v3.PluginConfig": {
		"name", "root_id", "vm_config", "configuration", "fail_open", "allow_on_headers_stop_iteration",
	},
	"envoy.extensions.wasm.v3.VmConfig":     {"vm_id", "runtime", "code"},
	"envoy.config.core.v3.AsyncDataSource":  {"local", "remote"},
	"envoy.config.core.v3.DataSource":       {"filename", "inline_bytes"},
	"envoy.config.core.v3.RemoteDataSource": {"http_uri", "sha256"},
	"envoy.config.core.v3.HttpUri":          {"uri", "cluster", "timeout"},
}

// anyTypes lists, per Any-typed field, the message types it may carry.
var anyTypes = map[protoreflect.FullName][]protoreflect.FullName{
	"envoy.config.listener.v3.Filter.typed_config": {
		"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
	},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter.typed_config": {
		"envoy.extensions.filters.http.router.v3.Router", "envoy.extensions.filters.http.fault.v3.HTTPFault",
	},
	"envoy.config.trace.v3.Tracing.Http.typed_config":                          {"envoy.config.trace.v3.OpenTelemetryConfig"},
	"envoy.config.route.v3.Route.TypedPerFilterConfigEntry.value":              {"envoy.extensions.filters.http.fault.v3.HTTPFault", "envoy.config.route.v3.FilterConfig"},
	"envoy.config.cluster.v3.Cluster.TypedExtensionProtocolOptionsEntry.value": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions"},
	"envoy.config.core.v3.TypedExtensionConfig.typed_config":                   {"envoy.extensions.filters.http.wasm.v3.Wasm"},
	"envoy.extensions.wasm.v3.PluginConfig.configuration":                      {"google.protobuf.StringValue"},
	"envoy.config.core.v3.TransportSocket.typed_config":                        {"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"},
}

var implementedSet = func() map[protoreflect.FullName]bool {
	s := make(map[protoreflect.FullName]bool)
	for msg, fields := range implemented {
		s[msg] = true
		for _, f := range fields {
			s[msg+"."+protoreflect.FullName(f)] = true
		}
	}
	return s
}()

// FieldError is a populated field the gateway does not implement, or an
// Any carrying a type it does not know. Path is the field's path from the
// resource, e.g. virtual_hosts[edge].routes[fraud].route.hash_policy.
type FieldError struct {
	Path   string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("field %s %s", e.Path, e.Reason)
}

// checkFields walks m and returns the first populated field outside the
// implemented set, in field-number order so the answer is stable.
func checkFields(m protoreflect.Message) error {
	return walk(m, "")
}

func walk(m protoreflect.Message, path string) error {
	desc := m.Descriptor()
	if !implementedSet[desc.FullName()] {
		return &FieldError{Path: orRoot(path), Reason: fmt.Sprintf("of type %s unsupported", desc.FullName())}
	}
	fields := desc.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		p := join(path, string(fd.Name()))
		if !implementedSet[fd.FullName()] {
			return &FieldError{Path: p, Reason: "unsupported"}
		}
		v := m.Get(fd)
		switch {
		case fd.IsList():
			l := v.List()
			for j := 0; j < l.Len(); j++ {
				if fd.Kind() != protoreflect.MessageKind {
					break
				}
				if err := walkValue(fd, l.Get(j).Message(), p+"["+elemName(l.Get(j).Message(), j)+"]"); err != nil {
					return err
				}
			}
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				continue
			}
			var err error
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = walkValue(fd.MapValue(), mv.Message(), p+"["+k.String()+"]")
				return err == nil
			})
			if err != nil {
				return err
			}
		case fd.Kind() == protoreflect.MessageKind:
			if err := walkValue(fd, v.Message(), p); err != nil {
				return err
			}
		}
	}
	if len(m.GetUnknown()) > 0 {
		return &FieldError{Path: orRoot(path), Reason: "carries unknown fields"}
	}
	return nil
}

// walkValue walks one message value of field fd, unpacking an Any.
func walkValue(fd protoreflect.FieldDescriptor, m protoreflect.Message, path string) error {
	if m.Descriptor().FullName() != "google.protobuf.Any" {
		return walk(m, path)
	}
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		return &FieldError{Path: path, Reason: "is not a valid Any"}
	}
	inner, err := unpackAllowed(fd.FullName(), a)
	if err != nil {
		return &FieldError{Path: path, Reason: err.Error()}
	}
	return walk(inner.ProtoReflect(), path)
}

// unpackAllowed unpacks a if the field may carry its type.
func unpackAllowed(field protoreflect.FullName, a *anypb.Any) (proto.Message, error) {
	name := a.MessageName()
	ok := false
	for _, t := range anyTypes[field] {
		ok = ok || t == name
	}
	if !ok {
		return nil, fmt.Errorf("type %s unsupported", strings.TrimPrefix(a.GetTypeUrl(), "type.googleapis.com/"))
	}
	msg, err := a.UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", name, err)
	}
	return msg, nil
}

// elemName names a list element by its name field when it has one (routes,
// clusters, virtual hosts), which reads better in a NACK than an index.
func elemName(m protoreflect.Message, i int) string {
	if fd := m.Descriptor().Fields().ByName("name"); fd != nil && fd.Kind() == protoreflect.StringKind {
		if n := m.Get(fd).String(); n != "" {
			return n
		}
	}
	return strconv.Itoa(i)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func orRoot(path string) string {
	if path == "" {
		return "(resource)"
	}
	return path
}
