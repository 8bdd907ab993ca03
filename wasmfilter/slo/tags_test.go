package slo

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// extract applies tag regexes the way Envoy's tag extractors do: group 1
// is cut from the name, group 2 is the value.
func extract(t *testing.T, name string) (string, map[string]string) {
	t.Helper()
	tags := map[string]string{}
	var cuts [][2]int
	for tag, expr := range StatsTags() {
		m := regexp.MustCompile(expr).FindStringSubmatchIndex(name)
		if m == nil {
			continue
		}
		tags[tag] = name[m[4]:m[5]]
		cuts = append(cuts, [2]int{m[2], m[3]})
	}
	sort.Slice(cuts, func(i, j int) bool { return cuts[i][0] > cuts[j][0] })
	for _, c := range cuts {
		name = name[:c[0]] + name[c[1]:]
	}
	return name, tags
}

func TestStatsTagsLiftTagsOutOfStatNames(t *testing.T) {
	tests := []struct {
		name     string
		wantName string
		wantTags map[string]string
	}{
		{StatName("requests_total", "default/fraud", "fraud-xgb"), "wasmcustom.maestro_slo_requests_total",
			map[string]string{"route": "default/fraud", "model": "fraud-xgb"}},
		{StatName("latency_ms", "", "m.v2"), "wasmcustom.maestro_slo_latency_ms",
			map[string]string{"route": "none", "model": "m_v2"}},
		{StatName("slow_requests_total", "r", "m", targetTag(99.9, 250)), "wasmcustom.maestro_slo_slow_requests_total",
			map[string]string{"route": "r", "model": "m", "target": "p99_9_250ms"}},
		{StatName("burn_rate_x1000", "r", "m", "window.short"), "wasmcustom.maestro_slo_burn_rate_x1000",
			map[string]string{"route": "r", "model": "m", "window": "short"}},
	}
	for _, tc := range tests {
		name, tags := extract(t, "wasmcustom."+tc.name)
		if name != tc.wantName || !reflect.DeepEqual(tags, tc.wantTags) {
			t.Errorf("%s: got %q %v, want %q %v", tc.name, name, tags, tc.wantName, tc.wantTags)
		}
	}
}

func TestDocsShowTheStatsTags(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "filters.md"))
	if err != nil {
		t.Fatal(err)
	}
	for tag, expr := range StatsTags() {
		want := "- tag_name: " + tag + "\n      regex: '" + expr + "'"
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/filters.md lacks\n%s", want)
		}
	}
}
