package stats

import (
	"regexp"
	"strings"
)

// WasmNamespace is the namespace Envoy puts a wasm filter's custom stats
// (proxy_define_metric) under.
const WasmNamespace = "wasmcustom"

// tagExtractor is an Envoy stats_tags entry: the regex's first capture
// group is cut from the stat name, its second is the tag's value.
type tagExtractor struct {
	name string
	re   *regexp.Regexp
}

// wasmTags are the stats_tags docs/filters.md gives Envoy's bootstrap for
// the slo and fanout filters, so that the gateway's names match Envoy's.
var wasmTags = []tagExtractor{
	{"route", regexp.MustCompile(`^wasmcustom\.maestro_slo_\w+(\.route\.([^.]+))`)},
	{"model", regexp.MustCompile(`^wasmcustom\.maestro_slo_\w+(?:\.route\.[^.]+)?(\.model\.([^.]+))`)},
	{"target", regexp.MustCompile(`^wasmcustom\.maestro_slo_\w+.*(\.target\.([^.]+))$`)},
	{"window", regexp.MustCompile(`^wasmcustom\.maestro_slo_\w+.*(\.window\.([^.]+))$`)},
	{"route", regexp.MustCompile(`^wasmcustom\.maestro_fanout_\w+(\.route\.([^.]+))`)},
	{"member", regexp.MustCompile(`^wasmcustom\.maestro_fanout_\w+\.route\.[^.]+(\.member\.([^.]+))$`)},
	{"shadow", regexp.MustCompile(`^wasmcustom\.maestro_fanout_\w+\.route\.[^.]+(\.shadow\.([^.]+))$`)},
}

// WasmMetric maps the name a filter defines (proxy_define_metric) to the
// Prometheus family and labels Envoy exposes it as: the stat is
// wasmcustom.<name>, the tag extractors cut the tags out, and the custom
// namespace is stripped with no envoy_ prefix.
func WasmMetric(name string) (string, []Label) {
	full := WasmNamespace + "." + name
	type cut struct{ from, to int }
	var cuts []cut
	var labels []Label
	for _, t := range wasmTags {
		m := t.re.FindStringSubmatchIndex(full)
		if m == nil || m[2] < 0 || m[4] < 0 {
			continue
		}
		cuts = append(cuts, cut{m[2], m[3]})
		labels = append(labels, Label{t.name, full[m[4]:m[5]]})
	}
	var b strings.Builder
	for i := 0; i < len(full); i++ {
		inCut := false
		for _, c := range cuts {
			inCut = inCut || (i >= c.from && i < c.to)
		}
		if !inCut {
			b.WriteByte(full[i])
		}
	}
	return sanitize(strings.TrimPrefix(b.String(), WasmNamespace+".")), labels
}

// sanitize makes a stat name a Prometheus name as Envoy does: every
// character outside [a-zA-Z0-9_] becomes '_'.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}
