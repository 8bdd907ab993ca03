package cost

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

const meshYAML = `apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud}
spec:
  versions:
    - {name: v1, endpoints: [{address: 127.0.0.1, port: 9001}]}
    - {name: v2, endpoints: [{address: 127.0.0.1, port: 9002}]}
    - {name: logistic, endpoints: [{address: 127.0.0.1, port: 9003}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud-ensemble}
spec:
  service: fraud
  match: {model: fraud}
  split: [{version: v1, weight: 100}]
  ensemble:
    members:
      - {version: v1}
      - {version: logistic, model: fraud-logistic}
  slo: {availability: 99.9}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud-shadow}
spec:
  service: fraud
  match: {model: fraud, headers: [{name: x-shadow, present: true}]}
  split: [{version: v1, weight: 100}]
  shadow: {version: v2}
`

func mesh(t *testing.T) *policy.Mesh {
	t.Helper()
	m, err := policy.Parse("mesh.yaml", []byte(meshYAML))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestComponents(t *testing.T) {
	m := mesh(t)
	want := map[string][]Component{
		"fraud-ensemble": {
			{Role: "split", Service: "fraud", ServiceVersion: "v1", Model: "fraud"},
			{Role: "member", Service: "fraud", ServiceVersion: "v1", Model: "fraud"},
			{Role: "member", Service: "fraud", ServiceVersion: "logistic", Model: "fraud-logistic"},
		},
		"fraud-shadow": {
			{Role: "split", Service: "fraud", ServiceVersion: "v1", Model: "fraud"},
			{Role: "shadow", Service: "fraud", ServiceVersion: "v2", Model: "fraud"},
		},
	}
	for name, w := range want {
		got := Components(m.Route(name))
		if len(got) != len(w) {
			t.Fatalf("%s: got %+v, want %+v", name, got, w)
		}
		for i := range w {
			if got[i] != w[i] {
				t.Errorf("%s component %d: got %+v, want %+v", name, i, got[i], w[i])
			}
		}
	}
}

func approx(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestBuildAttributesFanOutAndShadows(t *testing.T) {
	rows := []Row{
		{Service: "fraud", ServiceVersion: "v1", Instance: "a", Model: "fraud", Version: "2", Predictions: 1000, CoreSeconds: 2, GBSeconds: 10, Resident: true, Cores: 2},
		{Service: "fraud", ServiceVersion: "logistic", Instance: "b", Model: "fraud-logistic", Version: "1", Predictions: 1000, CoreSeconds: 0.5, GBSeconds: 1, Resident: true, Cores: 2},
		{Service: "fraud", ServiceVersion: "v2", Instance: "c", Model: "fraud", Version: "3", Predictions: 400, CoreSeconds: 1, GBSeconds: 4, Resident: true, Cores: 2},
		// Loaded and idle: memory paid for nothing.
		{Service: "fraud", ServiceVersion: "v2", Instance: "c", Model: "churn", Version: "1", GBSeconds: 60, Resident: true, Cores: 2},
	}
	prices := Prices{CPUCoreHour: 3.6, MemoryGBHour: 0.36} // 0.001 $/core-s, 0.0001 $/GB-s
	rep, err := Build(rows, time.Minute, Options{Prices: prices, Mesh: mesh(t)})
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]RouteCost{}
	for _, r := range rep.Routes {
		routes[r.Route] = r
	}
	tests := []struct {
		route            string
		preds, core, gbs float64
	}{
		// The members' CPU is the ensemble's; its predictions are the
		// split's only.
		{"fraud-ensemble", 1000, 2.5, 11},
		{"fraud-shadow", 1000, 3, 14},
	}
	for _, tc := range tests {
		r := routes[tc.route]
		if !approx(r.Predictions, tc.preds) || !approx(r.CoreSeconds, tc.core) || !approx(r.GBSeconds, tc.gbs) {
			t.Errorf("%s: predictions %v core-s %v GB-s %v, want %v %v %v", tc.route, r.Predictions, r.CoreSeconds, r.GBSeconds, tc.preds, tc.core, tc.gbs)
		}
		wantDollars := tc.core*0.001 + tc.gbs*0.0001
		if !approx(r.Dollars, wantDollars) || !approx(r.PerMillion(), wantDollars/tc.preds*1e6) {
			t.Errorf("%s: $%v ($%v per 1M), want $%v", tc.route, r.Dollars, r.PerMillion(), wantDollars)
		}
	}
	var kinds []string
	for _, rec := range rep.Recommendations {
		kinds = append(kinds, rec.Kind+" "+rec.Subject)
		if rec.Kind == "idle" && !approx(rec.MonthlyDollars, 1*0.36*730) {
			t.Errorf("idle saving $%v a month, want 1 GB x $0.36 x 730 h", rec.MonthlyDollars)
		}
	}
	// Pool fraud/v1 carries 2/60 cores on one replica of 2: nothing to
	// cut; churn is idle. No pool has more than one replica.
	if got := strings.Join(kinds, "; "); got != "idle churn v1 on fraud/v2" {
		t.Errorf("recommendations %q, want only the idle churn", got)
	}
}

func TestReplicaRecommendation(t *testing.T) {
	var rows []Row
	for _, inst := range []string{"a", "b", "c", "d"} {
		// 4 replicas of 2 cores carry 0.5 cores in all.
		rows = append(rows, Row{Service: "fraud", ServiceVersion: "v1", Instance: inst, Model: "fraud", Version: "2", Predictions: 100, CoreSeconds: 7.5, Resident: true, Cores: 2})
	}
	tests := []struct {
		name    string
		mesh    *policy.Mesh
		want    string
		servers []Server
	}{
		{"no SLO: one replica suffices", nil, "4 replicas of 2 cores carry 0.500 cores of load (6.2% of their cores); 1 keep utilization under 60%", nil},
		{"SLO keeps two", mesh(t), "; 2 keep utilization under 60%; route fraud-ensemble has an SLO, so at least 2 stay", nil},
		// The servers' whole processes use 30 core-s each in the minute:
		// that, not the models' 7.5, is the load replicas must carry.
		{"process CPU counts", nil, "4 replicas of 2 cores carry 2.000 cores of load (25.0% of their cores); 2 keep utilization under 60%",
			[]Server{{Instance: "a", ProcessCoreSeconds: 30}, {Instance: "b", ProcessCoreSeconds: 30}, {Instance: "c", ProcessCoreSeconds: 30}, {Instance: "d", ProcessCoreSeconds: 30}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Build(rows, time.Minute, Options{Prices: DefaultPrices(), Mesh: tc.mesh, Servers: tc.servers})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Recommendations) != 1 || !strings.Contains(rep.Recommendations[0].Message, tc.want) {
				t.Fatalf("recommendations %+v, want one containing %q", rep.Recommendations, tc.want)
			}
		})
	}
}

func TestIntegrate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	mv := MV{"fraud", "2"}
	samples := []Sample{
		{At: t0, Cores: 2, Models: map[MV]Meters{mv: {CPUSeconds: 10, Predictions: 100, MemoryBytes: bytesPerGB, Loaded: true}}},
		{At: t0.Add(10 * time.Second), Models: map[MV]Meters{mv: {CPUSeconds: 12, Predictions: 150, MemoryBytes: bytesPerGB, Loaded: true}}},
		// The server restarted: counters start again from zero and the
		// model is not loaded yet.
		{At: t0.Add(20 * time.Second), Cores: 2, Models: map[MV]Meters{mv: {CPUSeconds: 1, Predictions: 5}}},
	}
	rows := Integrate(Target{Service: "fraud", ServiceVersion: "v1", URL: "http://a/metrics"}, samples)
	if len(rows) != 1 {
		t.Fatalf("rows %+v, want one", rows)
	}
	r := rows[0]
	// 10 s at 1 GB, then 10 s falling from 1 GB to 0: 15 GB-s.
	if !approx(r.CoreSeconds, 3) || !approx(r.Predictions, 55) || !approx(r.GBSeconds, 15) || r.Resident || r.Cores != 2 {
		t.Errorf("row %+v, want 3 core-s, 55 predictions, 15 GB-s, not resident, 2 cores", r)
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in, want, svc, ver, err string
	}{
		{in: "http://127.0.0.1:8080", want: "http://127.0.0.1:8080/metrics"},
		{in: "fraud/v2=http://10.0.0.1:8080/custom", want: "http://10.0.0.1:8080/custom", svc: "fraud", ver: "v2"},
		{in: "http://h:1/metrics?x=a=b", want: "http://h:1/metrics?x=a=b"},
		{in: "fraud=http://h:1", err: "want SERVICE/VERSION=URL"},
		{in: "127.0.0.1:8080", err: "want an http(s) URL"},
	}
	for _, tc := range tests {
		got, err := ParseTarget(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseTarget(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.URL != tc.want || got.Service != tc.svc || got.ServiceVersion != tc.ver {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %s %s/%s", tc.in, got, err, tc.want, tc.svc, tc.ver)
		}
	}
}

func TestBuildRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name   string
		window time.Duration
		util   float64
		want   string
	}{
		{"no window", 0, 0, "window 0s: want a positive duration"},
		{"utilization over 1", time.Minute, 1.5, "target utilization 1.5: want a share in (0, 1]"},
		{"negative utilization", time.Minute, -0.1, "target utilization -0.1: want a share in (0, 1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(nil, tc.window, Options{TargetUtilization: tc.util})
			if err == nil || err.Error() != tc.want {
				t.Errorf("Build error %v, want %q", err, tc.want)
			}
		})
	}
}
