package bootstrap

import (
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ClusterNameTagRegex extracts envoy.cluster_name from a cluster stat
// (cluster.<name>.<stat>). Envoy's default takes only the first
// dot-separated word, so mesh cluster <service>.<version> would be exported
// as envoy_cluster_<version>_upstream_rq_total{envoy_cluster_name="<service>"}
// and no selector on the cluster name would match. Service and version
// names are DNS labels (no '.', no '_'), so a mesh cluster is exactly two
// such words; anything else (the xDS cluster, service|local) keeps Envoy's
// one-word rule. The first group is cut from the name, the second is the
// value, as for every stats_tags regex. Without lookahead (Envoy's regexes
// are ECMAScript, the tests' RE2) a one-word cluster followed by a stat
// group without '_' (ssl., internal., zone., canary.) is read as two
// words: only the xDS cluster's ssl.* stats meet this, and are labelled
// maestro-xds.ssl.
const ClusterNameTagRegex = `^cluster\.(([a-z0-9-]+\.[a-z0-9-]+|[^.]+)\.)`

// defaultTags are Envoy's built-in tag extractors kept by name. Replacing
// the cluster-name rule means turning use_all_default_tags off (Envoy runs
// its defaults first, and of two extractors of one name the first match
// wins), so the other defaults an HTTP proxy needs are listed; each name
// exists in every Envoy release since the v3 API.
var defaultTags = []string{
	"envoy.response_code",
	"envoy.response_code_class",
	"envoy.http_user_agent",
	"envoy.virtual_cluster",
	"envoy.fault_downstream_cluster",
	"envoy.ssl_cipher",
	"envoy.grpc_bridge_service",
	"envoy.grpc_bridge_method",
	"envoy.tcp_prefix",
	"envoy.http_conn_manager_prefix",
	"envoy.listener_address",
	"envoy.virtual_host",
	"envoy.rds_route_config",
	"envoy.worker_id",
}

// WasmTags are the tag extractors of the slo and fanout filters' stats
// (docs/filters.md), by tag name and regex, in order; the built-in
// gateway applies the same. One rule serves both filters' route tag: Envoy
// releases before duplicate tag names were allowed refuse a name twice.
var WasmTags = [][2]string{
	{"route", `^wasmcustom\.maestro_(?:slo|fanout)_\w+(\.route\.([^.]+))`},
	{"model", `^wasmcustom\.maestro_slo_\w+(?:\.route\.[^.]+)?(\.model\.([^.]+))`},
	{"target", `^wasmcustom\.maestro_slo_\w+.*(\.target\.([^.]+))$`},
	{"window", `^wasmcustom\.maestro_slo_\w+.*(\.window\.([^.]+))$`},
	{"member", `^wasmcustom\.maestro_fanout_\w+\.route\.[^.]+(\.member\.([^.]+))$`},
	{"shadow", `^wasmcustom\.maestro_fanout_\w+\.route\.[^.]+(\.shadow\.([^.]+))$`},
}

// statsConfig makes every default tag (cluster, route, listener names...)
// and the filters' tags labels on /stats/prometheus, with whole mesh
// cluster names, so the rollouts' and adaptive ensembles' selectors match
// what Envoy exports.
func statsConfig() *metricsv3.StatsConfig {
	sc := &metricsv3.StatsConfig{UseAllDefaultTags: wrapperspb.Bool(false)}
	add := func(name, regex string) {
		sc.StatsTags = append(sc.StatsTags, &metricsv3.TagSpecifier{TagName: name,
			TagValue: &metricsv3.TagSpecifier_Regex{Regex: regex}})
	}
	add("envoy.cluster_name", ClusterNameTagRegex)
	for _, n := range defaultTags {
		sc.StatsTags = append(sc.StatsTags, &metricsv3.TagSpecifier{TagName: n})
	}
	for _, t := range WasmTags {
		add(t[0], t[1])
	}
	return sc
}
