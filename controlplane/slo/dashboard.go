package slo

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Grafana dashboard shapes: only the fields maestro sets. Grafana fills in
// the rest with its defaults on import.
type dashboard struct {
	Title         string     `json:"title"`
	UID           string     `json:"uid"`
	Tags          []string   `json:"tags"`
	Timezone      string     `json:"timezone"`
	SchemaVersion int        `json:"schemaVersion"`
	Time          timeRange  `json:"time"`
	Templating    templating `json:"templating"`
	Panels        []panel    `json:"panels"`
}

type timeRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

type templating struct {
	List []variable `json:"list"`
}

type variable struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Label string `json:"label"`
	Query string `json:"query"`
}

type panel struct {
	ID          int          `json:"id"`
	Type        string       `json:"type"`
	Title       string       `json:"title"`
	GridPos     gridPos      `json:"gridPos"`
	Datasource  *datasource  `json:"datasource,omitempty"`
	Targets     []target     `json:"targets,omitempty"`
	FieldConfig *fieldConfig `json:"fieldConfig,omitempty"`
}

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	RefID        string `json:"refId"`
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat,omitempty"`
}

type fieldConfig struct {
	Defaults fieldDefaults `json:"defaults"`
}

type fieldDefaults struct {
	Unit string `json:"unit"`
	Min  *int   `json:"min,omitempty"`
}

// Dashboard renders a Grafana dashboard for one mesh: for each objective a
// row with its SLI, the error budget remaining over its window, and the
// burn rate over each alert window. The Prometheus data source is a
// dashboard variable, so the file imports into any Grafana.
func Dashboard(mesh string, objs []Objective, m Metrics) ([]byte, error) {
	if err := validateAll(objs, m); err != nil {
		return nil, err
	}
	sorted := append([]Objective(nil), objs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	ds := &datasource{Type: "prometheus", UID: "${datasource}"}
	zero := 0
	d := dashboard{
		Title:         fmt.Sprintf("Maestro SLOs: %s", mesh),
		UID:           "maestro-slo-" + mesh,
		Tags:          []string{"maestro", "slo"},
		Timezone:      "utc",
		SchemaVersion: 39,
		Time:          timeRange{From: "now-7d", To: "now"},
		Templating:    templating{List: []variable{{Name: "datasource", Type: "datasource", Label: "Prometheus", Query: "prometheus"}}},
	}
	id, y := 1, 0
	add := func(p panel) {
		p.ID = id
		id++
		d.Panels = append(d.Panels, p)
	}
	for _, o := range sorted {
		add(panel{Type: "row", Title: fmt.Sprintf("%s: %s %s on route %s", o.Name, o.Kind, percent(o.Target), o.Route),
			GridPos: gridPos{H: 1, W: 24, Y: y}})
		y++
		win := o.window()
		budget := formatFloat(1 - o.Target)
		add(panel{Type: "stat", Title: "SLI over " + promDuration(win), Datasource: ds,
			GridPos:     gridPos{H: 6, W: 6, X: 0, Y: y},
			Targets:     []target{{RefID: "A", Expr: "1 - (" + errorRatio(o, m, win) + ")"}},
			FieldConfig: &fieldConfig{Defaults: fieldDefaults{Unit: "percentunit"}}})
		add(panel{Type: "stat", Title: "Error budget remaining", Datasource: ds,
			GridPos:     gridPos{H: 6, W: 6, X: 6, Y: y},
			Targets:     []target{{RefID: "A", Expr: fmt.Sprintf("1 - (%s) / %s", errorRatio(o, m, win), budget)}},
			FieldConfig: &fieldConfig{Defaults: fieldDefaults{Unit: "percentunit"}}})
		var burn []target
		for i, a := range workbookAlerts {
			for j, r := range []string{RecordName(a.Long), RecordName(a.Short)} {
				burn = append(burn, target{
					RefID:        string(rune('A' + 2*i + j)),
					Expr:         fmt.Sprintf("%s{slo=%q} / %s", r, o.Name, budget),
					LegendFormat: fmt.Sprintf("burn rate %s (%s alert at %gx)", rangeOf(r), a.Severity, a.Factor(win)),
				})
			}
		}
		add(panel{Type: "timeseries", Title: "Burn rate (1 = budget spent exactly over the window)", Datasource: ds,
			GridPos: gridPos{H: 6, W: 12, X: 12, Y: y}, Targets: dedupe(burn),
			FieldConfig: &fieldConfig{Defaults: fieldDefaults{Unit: "none", Min: &zero}}})
		y += 6
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode dashboard: %w", err)
	}
	return append(out, '\n'), nil
}

// dedupe drops targets whose expression an earlier one already plots (the
// 6h range is both a long and a short window).
func dedupe(ts []target) []target {
	seen := map[string]bool{}
	var out []target
	for _, t := range ts {
		if seen[t.Expr] {
			continue
		}
		seen[t.Expr] = true
		t.RefID = string(rune('A' + len(out)))
		out = append(out, t)
	}
	return out
}

func rangeOf(record string) string {
	const prefix = "maestro_slo:error_ratio:rate"
	return record[len(prefix):]
}

func percent(target float64) string { return formatPercent(target) }
