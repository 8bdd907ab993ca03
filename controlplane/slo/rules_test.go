package slo

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestWorkbookFactorsFor30Days(t *testing.T) {
	want := []float64{14.4, 6, 1}
	for i, a := range WorkbookAlerts() {
		if got := a.Factor(DefaultWindow); fmt.Sprintf("%.6f", got) != fmt.Sprintf("%.6f", want[i]) {
			t.Errorf("alert %d (%v/%v): factor %v, want %v", i, a.Long, a.Short, got, want[i])
		}
	}
}

func TestValidateErrors(t *testing.T) {
	m := DefaultMetrics()
	ok := Objective{Name: "fraud-avail", Route: "fraud", Kind: Availability, Target: 0.999}
	cases := map[string]struct {
		edit func(o *Objective)
		want string
	}{
		"bad name":             {func(o *Objective) { o.Name = "has space" }, "name must match"},
		"no route":             {func(o *Objective) { o.Route = "" }, "route is required"},
		"target 1":             {func(o *Objective) { o.Target = 1 }, "target 1 must be between 0 and 1"},
		"target 0":             {func(o *Objective) { o.Target = 0 }, "target 0 must be between 0 and 1"},
		"short window":         {func(o *Objective) { o.Window = time.Hour }, "window 1h0m0s must be at least 24h"},
		"unknown kind":         {func(o *Objective) { o.Kind = "speed" }, `kind "speed": want availability, error_rate or latency`},
		"threshold on avail":   {func(o *Objective) { o.Threshold = time.Second }, "threshold is only for latency objectives"},
		"latency no threshold": {func(o *Objective) { o.Kind = Latency }, "latency objectives need a threshold"},
		"sub-ms threshold":     {func(o *Objective) { o.Kind, o.Threshold = Latency, 1500*time.Microsecond }, "threshold 1.5ms must be whole milliseconds"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			err := o.Validate(m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalidObjective) {
				t.Errorf("error %v does not wrap ErrInvalidObjective", err)
			}
		})
	}
	if err := ok.Validate(m); err != nil {
		t.Errorf("valid objective: %v", err)
	}
	if _, err := Rules([]Objective{ok, ok}, m); err == nil || !strings.Contains(err.Error(), "duplicate name") {
		t.Errorf("duplicate objectives: got %v", err)
	}
}

func testObjectives() []Objective {
	return []Objective{
		{Name: "fraud-availability", Route: "fraud", Model: "fraud", Kind: Availability, Target: 0.999},
		// The same counters as fraud-availability: only one of them alerts.
		{Name: "fraud-errors", Route: "fraud", Model: "fraud", Kind: ErrorRate, Target: 0.999},
		{Name: "churn-latency", Route: "churn", Model: "churn", Kind: Latency, Target: 0.99, Threshold: 250 * time.Millisecond},
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian package prometheus; .ci/run installs it): %v", err)
	}
	return p
}

func writeRules(t *testing.T, dir string) (string, ruleFile) {
	t.Helper()
	out, err := Rules(testObjectives(), DefaultMetrics())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(out, &f); err != nil {
		t.Fatal(err)
	}
	return path, f
}

// checkRules runs promtool check rules on path and fails on any problem
// it prints: promtool reports lint findings ("duplicate rules") with exit
// status 0, so the output is read, not only the status.
func checkRules(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command(promtool(t), "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	// The path (a test's temporary directory) may hold any word.
	text := strings.ToLower(strings.ReplaceAll(string(out), path, "RULES"))
	for _, bad := range []string{"failed", "lint", "duplicate", "warning", "error"} {
		if strings.Contains(text, bad) {
			t.Fatalf("promtool check rules printed %q:\n%s", bad, out)
		}
	}
	if !strings.Contains(text, "success") {
		t.Fatalf("promtool check rules did not report success:\n%s", out)
	}
}

func TestRulesPassPromtoolCheck(t *testing.T) {
	path, f := writeRules(t, t.TempDir())
	if len(f.Groups) != 3 {
		t.Fatalf("%d groups, want one per objective", len(f.Groups))
	}
	checkRules(t, path)
}

// TestObjectivesOnTheSameCountersAlertOnce: availability and error-rate
// objectives on one route read the same counters; only the strictest
// alerts (its alerts fire whenever the looser one's would), the other
// keeps its recorded series, and the rules stay lint clean.
func TestObjectivesOnTheSameCountersAlertOnce(t *testing.T) {
	objs := []Objective{
		{Name: "fraud-availability", Route: "fraud", Model: "fraud", Kind: Availability, Target: 0.999},
		{Name: "fraud-error-rate", Route: "fraud", Model: "fraud", Kind: ErrorRate, Target: 0.99},
		// Another model, another window or a latency target is not the same.
		{Name: "fraud-other-model", Route: "fraud", Model: "churn", Kind: ErrorRate, Target: 0.99},
		{Name: "fraud-quarter", Route: "fraud", Model: "fraud", Kind: ErrorRate, Target: 0.99, Window: 90 * 24 * time.Hour},
		{Name: "fraud-p99", Route: "fraud", Model: "fraud", Kind: Latency, Target: 0.99, Threshold: 100 * time.Millisecond},
		{Name: "fraud-p99-again", Route: "fraud", Model: "fraud", Kind: Latency, Target: 0.99, Threshold: 100 * time.Millisecond},
	}
	out, err := Rules(objs, DefaultMetrics())
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(out, &f); err != nil {
		t.Fatal(err)
	}
	alerts, records := map[string]int{}, map[string]int{}
	for _, g := range f.Groups {
		name := strings.TrimPrefix(g.Name, "maestro-slo-")
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts[name]++
				if r.Labels["slo"] != name {
					t.Errorf("alert of %s has slo label %q", name, r.Labels["slo"])
				}
				if name == "fraud-availability" && !strings.Contains(r.Annotations["description"], "fraud-error-rate") {
					t.Errorf("alert of %s does not say it stands for fraud-error-rate: %q", name, r.Annotations["description"])
				}
			} else {
				records[name]++
			}
		}
	}
	want := map[string]int{"fraud-availability": 3, "fraud-other-model": 3, "fraud-quarter": 3, "fraud-p99": 3}
	for _, o := range objs {
		if alerts[o.Name] != want[o.Name] {
			t.Errorf("%s has %d alerts, want %d", o.Name, alerts[o.Name], want[o.Name])
		}
		if records[o.Name] != len(ranges()) {
			t.Errorf("%s has %d recording rules, want %d", o.Name, records[o.Name], len(ranges()))
		}
	}
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	checkRules(t, path)
}

// Promtool unit-test file shapes.
type promTest struct {
	RuleFiles          []string   `yaml:"rule_files"`
	EvaluationInterval string     `yaml:"evaluation_interval"`
	Tests              []testCase `yaml:"tests"`
}

type testCase struct {
	Name        string      `yaml:"name"`
	Interval    string      `yaml:"interval"`
	InputSeries []series    `yaml:"input_series"`
	AlertTests  []alertTest `yaml:"alert_rule_test"`
}

type series struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

type alertTest struct {
	EvalTime  string     `yaml:"eval_time"`
	Alertname string     `yaml:"alertname"`
	ExpAlerts []expAlert `yaml:"exp_alerts"`
}

type expAlert struct {
	Labels      map[string]string `yaml:"exp_labels"`
	Annotations map[string]string `yaml:"exp_annotations"`
}

// expect builds the alerts an objective should raise for the given long
// windows, taking labels and annotations from the generated rules so the
// test checks when alerts fire, not how their text is worded.
func expect(t *testing.T, f ruleFile, o Objective, longWindows ...string) []expAlert {
	t.Helper()
	var out []expAlert
	for _, lw := range longWindows {
		found := false
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" || g.Name != "maestro-slo-"+o.Name || r.Labels["long_window"] != lw {
					continue
				}
				labels := map[string]string{"slo": o.Name, "slo_kind": string(o.Kind), "route": o.Route}
				if o.Model != "" {
					labels["model"] = o.Model
				}
				for k, v := range r.Labels {
					labels[k] = v
				}
				out = append(out, expAlert{Labels: labels, Annotations: r.Annotations})
				found = true
			}
		}
		if !found {
			t.Fatalf("no alert for %s with long window %s", o.Name, lw)
		}
	}
	return out
}

// traffic returns counter series for one Envoy route (as the slo filter
// tags it): perMin requests a minute with errPerMin errors, for the given
// number of minutes.
func traffic(route, model string, perMin, errPerMin float64, minutes int) []series {
	sel := fmt.Sprintf(`route=%q,model=%q`, route, model)
	return []series{
		{fmt.Sprintf("maestro_slo_requests_total{%s}", sel), fmt.Sprintf("0+%gx%d", perMin, minutes)},
		{fmt.Sprintf("maestro_slo_errors_total{%s}", sel), fmt.Sprintf("0+%gx%d", errPerMin, minutes)},
	}
}

// latency returns the series of route with slowShare of requests slower
// than the churn objective's 250 ms.
func latency(route string, perMin, slowShare float64, minutes int) []series {
	sel := fmt.Sprintf(`route=%q,model="churn"`, route)
	return []series{
		{fmt.Sprintf(`maestro_slo_requests_total{%s}`, sel), fmt.Sprintf("0+%gx%d", perMin, minutes)},
		{fmt.Sprintf(`maestro_slo_slow_requests_total{%s,target="p99_250ms"}`, sel), fmt.Sprintf("0+%gx%d", perMin*slowShare, minutes)},
		// A looser target on the same route must not be read.
		{fmt.Sprintf(`maestro_slo_slow_requests_total{%s,target="p50_1000ms"}`, sel), fmt.Sprintf("0+%gx%d", perMin, minutes)},
	}
}

func TestAlertsFireWhenTheyShould(t *testing.T) {
	bin := promtool(t)
	dir := t.TempDir()
	path, f := writeRules(t, dir)
	objs := testObjectives()
	// fraud-errors reads the same counters as fraud-availability with the
	// same target: only fraud-availability alerts, once per window.
	avail, lat := objs[0], objs[2]
	alerts := func(evalTime string, exp []expAlert) alertTest {
		return alertTest{EvalTime: evalTime, Alertname: AlertName, ExpAlerts: exp}
	}
	tests := []testCase{
		{
			Name:        "fast burn of server errors pages on every window",
			InputSeries: traffic("fraud", "fraud", 1000, 20, 480), // 2% > 14.4 x 0.1%
			AlertTests:  []alertTest{alerts("7h", expect(t, f, avail, "1h", "6h", "3d"))},
		},
		{
			Name:        "slow burn opens a ticket and does not page",
			InputSeries: traffic("fraud", "fraud", 1000, 3, 480), // 0.3%: above 1x, below 6x
			AlertTests:  []alertTest{alerts("7h", expect(t, f, avail, "3d"))},
		},
		{
			Name:        "within budget stays silent",
			InputSeries: traffic("fraud", "fraud", 1000, 0.5, 480), // 0.05%
			AlertTests:  []alertTest{alerts("7h", nil)},
		},
		{
			Name: "a spike that stopped no longer pages",
			InputSeries: []series{
				{`maestro_slo_requests_total{route="fraud",model="fraud"}`, "0+1000x120"},
				{`maestro_slo_errors_total{route="fraud",model="fraud"}`, "0+20x60 1200+0x60"},
			},
			AlertTests: []alertTest{
				alerts("50m", expect(t, f, avail, "1h", "6h", "3d")),
				// The short windows are clean again, so only the ticket stays.
				alerts("2h", expect(t, f, avail, "3d")),
			},
		},
		{
			Name: "errors on the route's REST and rule forms count",
			InputSeries: append(traffic("fraud", "fraud", 1000, 0, 120),
				append(traffic("fraud_rest", "fraud", 500, 30, 120), traffic("fraud_try-v2_rest", "fraud", 500, 30, 120)...)...),
			AlertTests: []alertTest{alerts("90m", expect(t, f, avail, "1h", "6h", "3d"))},
		},
		{
			Name: "errors on a neighbouring route or another model do not count",
			InputSeries: append(traffic("fraud", "fraud", 1000, 0, 120),
				append(traffic("fraud-ensemble", "fraud", 1000, 500, 120), traffic("fraud", "churn", 1000, 500, 120)...)...),
			AlertTests: []alertTest{alerts("90m", nil)},
		},
		{
			Name:        "slow requests burn the latency budget",
			InputSeries: latency("churn", 600, 0.2, 120), // 20% slow > 14.4 x 1%
			AlertTests:  []alertTest{alerts("90m", expect(t, f, lat, "1h", "6h", "3d"))},
		},
		{
			Name:        "fast enough requests stay silent",
			InputSeries: latency("churn", 600, 0.005, 120), // 0.5% slow < 1%
			AlertTests:  []alertTest{alerts("90m", nil)},
		},
	}
	for i := range tests {
		tests[i].Interval = "1m"
	}
	spec := promTest{RuleFiles: []string{filepath.Base(path)}, EvaluationInterval: "1m", Tests: tests}
	data, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	testPath := filepath.Join(dir, "rules_test.yaml")
	if err := os.WriteFile(testPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "test", "rules", testPath)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s\n--- test file:\n%s", err, out, data)
	}
}

func TestDashboardPlotsEveryObjectiveFromRecordedSeries(t *testing.T) {
	m := DefaultMetrics()
	out, err := Dashboard("demo", testObjectives(), m)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	_, f := writeRules(t, t.TempDir())
	recorded := map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	rows := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			rows++
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if name, _, ok := strings.Cut(tg.Expr, "{"); ok && strings.HasPrefix(name, "maestro_slo:") && !recorded[name] {
				t.Errorf("panel %q reads %s, which no rule records", p.Title, name)
			}
		}
	}
	if rows != len(testObjectives()) {
		t.Errorf("%d rows, want one per objective", rows)
	}
	burn := d.Panels[3]
	if len(burn.Targets) != 5 {
		t.Errorf("burn panel has %d queries, want 5 distinct windows (5m 30m 1h 6h 3d)", len(burn.Targets))
	}
}
