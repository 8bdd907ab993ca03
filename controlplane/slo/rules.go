package slo

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// BurnAlert is one multi-window burn-rate alert: it fires when the error
// ratio over both windows exceeds Factor times the error budget.
type BurnAlert struct {
	Long, Short time.Duration
	// BudgetShare is the share of the whole budget that, spent within
	// Long, should raise this alert. The burn-rate factor follows from it.
	BudgetShare float64
	Severity    string
}

// WorkbookAlerts are the SRE workbook's recommended alerts: page when 2% of
// the budget burns in an hour or 5% in six hours, open a ticket when 10%
// burns in three days. For a 30-day budget the factors are 14.4, 6 and 1.
var workbookAlerts = [...]BurnAlert{
	{Long: time.Hour, Short: 5 * time.Minute, BudgetShare: 0.02, Severity: "page"},
	{Long: 6 * time.Hour, Short: 30 * time.Minute, BudgetShare: 0.05, Severity: "page"},
	{Long: 3 * 24 * time.Hour, Short: 6 * time.Hour, BudgetShare: 0.10, Severity: "ticket"},
}

// WorkbookAlerts returns a copy of the workbook's three alerts.
func WorkbookAlerts() []BurnAlert { return append([]BurnAlert(nil), workbookAlerts[:]...) }

// Factor is the burn rate at which a spends its budget share in its long
// window, for an error budget covering window.
func (a BurnAlert) Factor(window time.Duration) float64 {
	return a.BudgetShare * window.Hours() / a.Long.Hours()
}

// Rule group file shapes, as Prometheus reads them.
type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval,omitempty"`
	Rules    []rule `yaml:"rules"`
}

type rule struct {
	Record      string            `yaml:"record,omitempty"`
	Alert       string            `yaml:"alert,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// AlertName is the name of every burn-rate alert; the slo, severity and
// long_window labels tell them apart.
const AlertName = "MaestroSLOErrorBudgetBurn"

// RecordName is the recording rule holding an objective's error ratio over
// the given range.
func RecordName(rng time.Duration) string {
	return "maestro_slo:error_ratio:rate" + promDuration(rng)
}

// Rules renders Prometheus recording and alerting rules for objs, one rule
// group per objective, sorted by name. Every objective is validated first;
// all problems are reported together.
func Rules(objs []Objective, m Metrics) ([]byte, error) {
	if err := validateAll(objs, m); err != nil {
		return nil, err
	}
	sorted := append([]Objective(nil), objs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	coveredBy, covers := redundant(sorted)
	var f ruleFile
	for _, o := range sorted {
		f.Groups = append(f.Groups, group(o, m, coveredBy[o.Name], covers[o.Name]))
	}
	out, err := yaml.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("encode rules: %w", err)
	}
	return out, nil
}

func validateAll(objs []Objective, m Metrics) error {
	var errs []error
	seen := map[string]bool{}
	for _, o := range objs {
		if seen[o.Name] {
			errs = append(errs, fmt.Errorf("slo %q: %w: duplicate name", o.Name, ErrInvalidObjective))
		}
		seen[o.Name] = true
		errs = append(errs, o.Validate(m))
	}
	return errors.Join(errs...)
}

// ranges lists every range an objective's alerts read, shortest first.
func ranges() []time.Duration {
	set := map[time.Duration]bool{}
	for _, a := range workbookAlerts {
		set[a.Long], set[a.Short] = true, true
	}
	out := make([]time.Duration, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// sliKey identifies what an objective measures: objectives with the same
// key read the same ratio of the same counters over the same budget
// window, and differ at most in their target.
func sliKey(o Objective) string {
	class := "errors" // availability and error_rate both count failed requests
	if o.Kind == Latency {
		class = "latency " + o.targetTag()
	}
	return strings.Join([]string{o.Route, o.Model, promDuration(o.window()), class}, "\x00")
}

// redundant finds the objectives whose alerts another one's imply: of
// objectives measuring the same thing (sliKey), the strictest (highest
// target; the first by name on a tie) crosses every burn threshold at or
// before the others, so only it alerts. An availability of 99.9% and an
// error rate of at most 1% on the same route would otherwise page twice
// for one incident. coveredBy maps a redundant objective to the one that
// alerts for it; covers lists, per alerting objective, those it covers.
func redundant(sorted []Objective) (coveredBy map[string]string, covers map[string][]string) {
	coveredBy, covers = map[string]string{}, map[string][]string{}
	strictest := map[string]Objective{}
	for _, o := range sorted { // by name, so ties keep the first
		k := sliKey(o)
		if s, ok := strictest[k]; !ok || o.Target > s.Target {
			strictest[k] = o
		}
	}
	for _, o := range sorted {
		if s := strictest[sliKey(o)]; s.Name != o.Name {
			coveredBy[o.Name] = s.Name
			covers[s.Name] = append(covers[s.Name], o.Name)
		}
	}
	return coveredBy, covers
}

// group renders o's recording rules and, unless another objective alerts
// for it (coveredBy), its burn-rate alerts. Alert rules carry the slo
// label themselves, so that those of different objectives are distinct
// rules (promtool lints identical name and labels as duplicates).
func group(o Objective, m Metrics, coveredBy string, covers []string) ruleGroup {
	g := ruleGroup{Name: "maestro-slo-" + o.Name}
	labels := map[string]string{"slo": o.Name, "slo_kind": string(o.Kind), "route": o.Route}
	if o.Model != "" {
		labels["model"] = o.Model
	}
	for _, r := range ranges() {
		g.Rules = append(g.Rules, rule{Record: RecordName(r), Expr: errorRatio(o, m, r), Labels: labels})
	}
	if coveredBy != "" {
		return g // its series stay recorded for the dashboard
	}
	also := ""
	if len(covers) > 0 {
		also = fmt.Sprintf(" It also stands for %s, which measure the same requests with a looser target.", strings.Join(covers, ", "))
	}
	budget := 1 - o.Target
	for _, a := range workbookAlerts {
		threshold := formatFloat(a.Factor(o.window()) * budget)
		sel := fmt.Sprintf(`{slo=%q}`, o.Name)
		g.Rules = append(g.Rules, rule{
			Alert: AlertName,
			Expr: fmt.Sprintf("%s%s > %s\nand\n%s%s > %s",
				RecordName(a.Long), sel, threshold, RecordName(a.Short), sel, threshold),
			Labels: map[string]string{
				"slo":          o.Name,
				"severity":     a.Severity,
				"long_window":  promDuration(a.Long),
				"short_window": promDuration(a.Short),
			},
			Annotations: map[string]string{
				"summary": fmt.Sprintf("SLO %s (%s on route %s) is burning its %s error budget %gx too fast",
					o.Name, o.Kind, o.Route, promDuration(o.window()), a.Factor(o.window())),
				"description": fmt.Sprintf("The error ratio over %s and over %s is above %s: at this rate "+
					"%.0f%% of the budget is gone within %s.%s Runbook: docs/operations.md#slo-burn.",
					promDuration(a.Long), promDuration(a.Short), formatPercent(a.Factor(o.window())*budget),
					a.BudgetShare*100, promDuration(a.Long), also),
			},
		})
	}
	return g
}

// errorRatio is the PromQL share of bad events among all events over rng.
func errorRatio(o Objective, m Metrics, rng time.Duration) string {
	w := promDuration(rng)
	bad := fmt.Sprintf("%s%s", m.Errors, selector(o, ""))
	if o.Kind == Latency {
		bad = fmt.Sprintf("%s%s", m.SlowRequests, selector(o, fmt.Sprintf("target=%q", o.targetTag())))
	}
	return fmt.Sprintf("sum(rate(%s[%s]))\n/\nsum(rate(%s%s[%s]))", bad, w, m.Requests, selector(o, ""), w)
}

// selector matches every Envoy route of o's policy route: the route itself
// and its suffixed forms, whose '.' the filter's tags turn into '_'.
// Policy names cannot contain '_', so the pattern cannot catch a
// neighbour.
func selector(o Objective, extra string) string {
	parts := []string{fmt.Sprintf(`route=~"%s(_.+)?"`, o.Route)}
	if o.Model != "" {
		parts = append(parts, fmt.Sprintf("model=%q", o.Model))
	}
	if extra != "" {
		parts = append(parts, extra)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// promDuration formats d the way Prometheus writes ranges (5m, 1h, 3d).
func promDuration(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	default:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
}

// formatFloat rounds to 12 significant digits so that 14.4*0.001 prints as
// 0.0144, not as its binary neighbour.
func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', 12, 64) }

func formatPercent(f float64) string { return strconv.FormatFloat(f*100, 'g', 4, 64) + "%" }
