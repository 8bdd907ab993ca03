package stats

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestWasmMetricNamesAsEnvoy(t *testing.T) {
	tests := map[string]struct {
		family string
		labels []Label
	}{
		"maestro_slo_requests_total.route.fraud.model.fraud": {"maestro_slo_requests_total", L("route", "fraud", "model", "fraud")},
		"maestro_slo_slow_requests_total.route.fraud_rest.model.fraud.target.p99_250ms": {
			"maestro_slo_slow_requests_total", L("route", "fraud_rest", "model", "fraud", "target", "p99_250ms")},
		"maestro_slo_burn_rate_x1000.route.fraud.model.fraud.window.short": {
			"maestro_slo_burn_rate_x1000", L("route", "fraud", "model", "fraud", "window", "short")},
		"maestro_fanout_member_answers_total.route.fraud-ensemble.member.fraud_v1": {
			"maestro_fanout_member_answers_total", L("route", "fraud-ensemble", "member", "fraud_v1")},
		"maestro_fanout_shadow_sent_total.route.fraud.shadow.fraud_logistic": {
			"maestro_fanout_shadow_sent_total", L("route", "fraud", "shadow", "fraud_logistic")},
		"maestro_fanout_requests_total.route.fraud": {"maestro_fanout_requests_total", L("route", "fraud")},
		// A name no extractor knows keeps its dots, sanitized.
		"other.thing": {"other_thing", nil},
	}
	for name, tc := range tests {
		fam, labels := WasmMetric(name)
		if fam != tc.family || !slices.Equal(labels, tc.labels) {
			t.Errorf("WasmMetric(%q) = %s %v, want %s %v", name, fam, labels, tc.family, tc.labels)
		}
	}
}

func TestWritePrometheus(t *testing.T) {
	s := New()
	s.Counter("envoy_cluster_upstream_rq_total", L("envoy_cluster_name", "fraud.v1")...).Add(3)
	s.Gauge("envoy_cluster_upstream_rq_active", L("envoy_cluster_name", "fraud.v1")...).Set(2)
	h := s.Histogram("envoy_cluster_upstream_rq_time", L("envoy_cluster_name", "fraud.v1")...)
	h.Record(0.3)
	h.Record(7)
	var b strings.Builder
	if err := s.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# TYPE envoy_cluster_upstream_rq_total counter\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"fraud.v1\"} 3\n",
		"envoy_cluster_upstream_rq_active{envoy_cluster_name=\"fraud.v1\"} 2\n",
		"envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"fraud.v1\",le=\"0.5\"} 1\n",
		"envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"fraud.v1\",le=\"10\"} 2\n",
		"envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"fraud.v1\",le=\"+Inf\"} 2\n",
		"envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"fraud.v1\"} 7.3\n",
		"envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"fraud.v1\"} 2\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}

// TestWasmTagsAreTheDocumentedOnes: the gateway extracts tags with exactly
// the stats_tags docs/filters.md gives Envoy's bootstrap.
func TestWasmTagsAreTheDocumentedOnes(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "filters.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range wasmTags {
		want := fmt.Sprintf("- tag_name: %s\n      regex: '%s'", tag.name, tag.re.String())
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/filters.md lacks\n%s", want)
		}
	}
}
