package slo

import (
	"context"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

func TestFromExamplePolicy(t *testing.T) {
	mesh, err := policy.Load(context.Background(), "../../examples/mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Objective{}
	for _, o := range FromPolicy(mesh) {
		got[o.Name] = o
	}
	want := map[string]Objective{
		"fraud-availability":               {Name: "fraud-availability", Route: "fraud", Kind: Availability, Target: 0.999, Window: DefaultWindow},
		"fraud-latency-p99-250ms":          {Name: "fraud-latency-p99-250ms", Route: "fraud", Kind: Latency, Target: 0.99, Threshold: 250 * time.Millisecond, Window: DefaultWindow},
		"fraud-ensemble-error-rate":        {Name: "fraud-ensemble-error-rate", Route: "fraud-ensemble", Kind: ErrorRate, Target: 0.99, Window: DefaultWindow},
		"fraud-ensemble-latency-p95-100ms": {Name: "fraud-ensemble-latency-p95-100ms", Route: "fraud-ensemble", Kind: Latency, Target: 0.95, Threshold: 100 * time.Millisecond, Window: DefaultWindow},
	}
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("no objective %s; got %v", name, got)
		} else if g != w {
			t.Errorf("%s = %+v, want %+v", name, g, w)
		}
	}
	if _, err := Rules(FromPolicy(mesh), DefaultMetrics()); err != nil {
		t.Errorf("the example's objectives do not validate: %v", err)
	}
}

func TestLatencyTargetTagMatchesTheFilter(t *testing.T) {
	// The slo filter tags targets as p<percentile, '.' -> '_'>_<ms>ms.
	for _, tc := range []struct {
		target float64
		ms     int64
		want   string
	}{{0.99, 250, "p99_250ms"}, {0.999, 100, "p99_9_100ms"}, {0.5, 1000, "p50_1000ms"}} {
		o := Objective{Kind: Latency, Target: tc.target, Threshold: time.Duration(tc.ms) * time.Millisecond}
		if got := o.targetTag(); got != tc.want {
			t.Errorf("target %v: tag %q, want %q", tc.target, got, tc.want)
		}
	}
}
