package bootstrap

import (
	"maps"
	"regexp"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/metricsource"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/internal/gateway/stats"
)

// builtinTags are the regexes of Envoy's built-in extractors (its
// source/common/config/well_known_names.cc) that cluster stats meet, for
// the stats_tags that name a default without a regex.
var builtinTags = map[string]string{
	"envoy.response_code":       `_rq(_(\d{3}))$`,
	"envoy.response_code_class": `_rq_(\d)xx$`,
}

// envoyExport names stat as Envoy's /stats/prometheus does under the
// bootstrap's stats_tags: each extractor in order matches the whole stat
// name; the first group is cut from the name and the second (else the
// first) is the tag's value; a tag name already extracted is skipped (the
// first match wins). Custom stats (wasmcustom.*) lose their namespace and
// get no envoy_ prefix; every other character that Prometheus refuses
// becomes '_'.
func envoyExport(t *testing.T, stat string) (string, map[string]string) {
	t.Helper()
	b, err := Envoy(Config{NodeID: "gw-1", Role: model.RoleGateway, XDSAddr: "127.0.0.1:18000"})
	if err != nil {
		t.Fatal(err)
	}
	sc := b.GetStatsConfig()
	if sc.GetUseAllDefaultTags().GetValue() {
		t.Fatal("use_all_default_tags is on: Envoy's one-word cluster-name rule would run before the bootstrap's")
	}
	labels := map[string]string{}
	cut := make([]bool, len(stat))
	for _, spec := range sc.GetStatsTags() {
		expr := spec.GetRegex()
		if expr == "" {
			expr = builtinTags[spec.GetTagName()]
		}
		label := strings.ReplaceAll(spec.GetTagName(), ".", "_")
		if _, done := labels[label]; expr == "" || done {
			continue
		}
		m := regexp.MustCompile(expr).FindStringSubmatchIndex(stat)
		if m == nil || m[2] < 0 {
			continue
		}
		from, to := m[2], m[3]
		if len(m) >= 6 && m[4] >= 0 {
			labels[label] = stat[m[4]:m[5]]
		} else {
			labels[label] = stat[from:to]
		}
		for i := from; i < to; i++ {
			cut[i] = true
		}
	}
	var name strings.Builder
	for i := range stat {
		if !cut[i] {
			name.WriteByte(stat[i])
		}
	}
	family, custom := strings.CutPrefix(name.String(), stats.WasmNamespace+".")
	family = regexp.MustCompile(`[^a-zA-Z0-9_]`).ReplaceAllString(family, "_")
	if !custom {
		family = "envoy_" + family
	}
	return family, labels
}

// selects reports whether sel's metric and plain matchers are family and
// labels.
func selects(sel metricsource.Selector, family string, labels map[string]string) bool {
	if sel.Metric != family {
		return false
	}
	for _, m := range sel.Matchers {
		if m.Regex || labels[m.Name] != m.Value {
			return false
		}
	}
	return true
}

// TestEnvoyClusterStatsMatchTheSelectors checks that the series Envoy
// exports for a mesh cluster under the bootstrap's stats_tags are the ones
// the rollouts' Envoy signals select, and that other clusters keep Envoy's
// one-word rule.
func TestEnvoyClusterStatsMatchTheSelectors(t *testing.T) {
	sig := metricsource.EnvoyClusterSignals(model.ClusterName("fraud", "v2"))
	tests := map[string]struct {
		family string
		labels map[string]string
		sel    *metricsource.Selector
	}{
		"cluster.fraud.v2.upstream_rq_total": {"envoy_cluster_upstream_rq_total",
			map[string]string{"envoy_cluster_name": "fraud.v2"}, &sig.Requests},
		"cluster.fraud.v2.upstream_rq_5xx": {"envoy_cluster_upstream_rq_xx",
			map[string]string{"envoy_cluster_name": "fraud.v2", "envoy_response_code_class": "5"}, &sig.Errors},
		"cluster.fraud.v2.upstream_rq_503": {"envoy_cluster_upstream_rq",
			map[string]string{"envoy_cluster_name": "fraud.v2", "envoy_response_code": "503"}, nil},
		"cluster.fraud.v2.upstream_rq_time": {"envoy_cluster_upstream_rq_time",
			map[string]string{"envoy_cluster_name": "fraud.v2"}, &sig.Latency},
		// A version may be named like a stat group.
		"cluster.fraud.canary.upstream_rq_total": {"envoy_cluster_upstream_rq_total",
			map[string]string{"envoy_cluster_name": "fraud.canary"}, nil},
		"cluster.fraud.v2.circuit_breakers.default.cx_open": {"envoy_cluster_circuit_breakers_default_cx_open",
			map[string]string{"envoy_cluster_name": "fraud.v2"}, nil},
		"cluster.maestro-xds.upstream_cx_total": {"envoy_cluster_upstream_cx_total",
			map[string]string{"envoy_cluster_name": XDSCluster}, nil},
		"cluster.fraud|local.upstream_rq_total": {"envoy_cluster_upstream_rq_total",
			map[string]string{"envoy_cluster_name": "fraud|local"}, nil},
	}
	for stat, tc := range tests {
		t.Run(stat, func(t *testing.T) {
			family, labels := envoyExport(t, stat)
			if family != tc.family || !maps.Equal(labels, tc.labels) {
				t.Fatalf("exported as %s%v, want %s%v", family, labels, tc.family, tc.labels)
			}
			if tc.sel != nil && !selects(*tc.sel, family, labels) {
				t.Errorf("selector %v does not match %s%v", *tc.sel, family, labels)
			}
		})
	}
}

// TestEnvoyWasmStatsMatchTheGateway checks that Envoy under the bootstrap's
// stats_tags names the filters' stats as the built-in gateway does, the
// series the adaptive ensembles and the SLO rules read.
func TestEnvoyWasmStatsMatchTheGateway(t *testing.T) {
	for _, name := range []string{
		"maestro_fanout_member_timeouts_total.route.fraud-ensemble.member.fraud_v2",
		"maestro_fanout_member_answers_total.route.fraud-ensemble_rest.member.fraud_v1",
		"maestro_fanout_shadow_class_agree_rows_total.route.fraud.shadow.fraud_logistic",
		"maestro_fanout_observe_failures_total.route.fraud-ensemble",
		"maestro_slo_requests_total.route.fraud.model.fraud",
		"maestro_slo_burn_rate_x1000.route.fraud.model.fraud.window.short",
	} {
		t.Run(name, func(t *testing.T) {
			family, labels := envoyExport(t, stats.WasmNamespace+"."+name)
			gwFamily, gwLabels := stats.WasmMetric(name)
			want := map[string]string{}
			for _, l := range gwLabels {
				want[l.Name] = l.Value
			}
			if family != gwFamily || !maps.Equal(labels, want) {
				t.Errorf("Envoy exports %s%v, the gateway %s%v", family, labels, gwFamily, want)
			}
		})
	}
}
