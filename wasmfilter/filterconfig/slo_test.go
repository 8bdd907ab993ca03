package filterconfig

import (
	"strings"
	"testing"
)

func TestParseSLO(t *testing.T) {
	s, err := ParseSLO([]byte(`{"objectives":[
	  {"route":"fraud","model":"fraud-xgb","availability":0.999,
	   "latency":[{"percentile":99,"thresholdMs":250}],"budgetHeader":"x-slo-budget"},
	  {"errorRate":0.05,"shortWindowSeconds":60,"longWindowSeconds":600,"shortBurnThreshold":2}]}`))
	if err != nil {
		t.Fatal(err)
	}
	a, b := &s.Objectives[0], &s.Objectives[1]
	if got := a.ErrorBudget(); got < 0.000999 || got > 0.001001 {
		t.Fatalf("budget = %v", got)
	}
	if a.EffectiveShortWindowSeconds() != 300 || a.EffectiveLongWindowSeconds() != 3600 ||
		a.EffectiveShortBurnThreshold() != 14.4 || a.EffectiveLongBurnThreshold() != 6 || a.BucketSeconds() != 30 {
		t.Fatalf("defaults not applied: %+v", a)
	}
	if b.ErrorBudget() != 0.05 || b.EffectiveShortBurnThreshold() != 2 || b.BucketSeconds() != 6 {
		t.Fatalf("explicit values lost: %+v", b)
	}
	if s.EffectiveEvaluateMs() != 1000 {
		t.Fatalf("evaluate = %d", s.EffectiveEvaluateMs())
	}
	tests := map[[2]string]*SLOObjective{
		{"fraud", "fraud-xgb"}: a,
		{"fraud", "other"}:     b,
		{"", ""}:               b,
	}
	for in, want := range tests {
		if got := s.Match(in[0], in[1]); got != want {
			t.Errorf("Match(%q, %q) = %+v", in[0], in[1], got)
		}
	}
}

func TestParseSLORejects(t *testing.T) {
	tests := map[string]struct{ in, want string }{
		"syntax":         {`{"objectives":[}`, "line 1 col 17"},
		"unknown field":  {`{"objectives":[{"availability":0.9,"windo":1}]}`, `unknown field "windo"`},
		"no objectives":  {`{"objectives":[]}`, "objectives: at least one objective is required"},
		"no target":      {`{"objectives":[{"route":"r"}]}`, "objectives[0].availability: one of availability or errorRate is required"},
		"both targets":   {`{"objectives":[{"availability":0.9,"errorRate":0.1}]}`, "set either availability or errorRate"},
		"availability 1": {`{"objectives":[{"availability":1}]}`, "objectives[0].availability: must be between 0 and 1 exclusive, got 1"},
		"percentile":     {`{"objectives":[{"availability":0.9,"latency":[{"percentile":100,"thresholdMs":5}]}]}`, "objectives[0].latency[0].percentile"},
		"threshold":      {`{"objectives":[{"availability":0.9,"latency":[{"percentile":99}]}]}`, "objectives[0].latency[0].thresholdMs: must be positive"},
		"windows":        {`{"objectives":[{"availability":0.9,"shortWindowSeconds":3600}]}`, "objectives[0].shortWindowSeconds: 3600 must be shorter than the long window (3600)"},
		"burn threshold": {`{"objectives":[{"availability":0.9,"longBurnThreshold":-1}]}`, "objectives[0].longBurnThreshold: must be positive"},
		"header":         {`{"objectives":[{"availability":0.9,"budgetHeader":"X Budget"}]}`, "objectives[0].budgetHeader"},
		"duplicate":      {`{"objectives":[{"availability":0.9},{"availability":0.8}]}`, "objectives[1]: route \"\" and model \"\" already used by objectives[0]"},
		"trailing":       {`{"objectives":[{"availability":0.9}]} {}`, "trailing data"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseSLO([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestSLOValidateReportsEveryProblem(t *testing.T) {
	s := SLO{Objectives: []SLOObjective{{}, {Availability: 2}}}
	err := s.Validate()
	if err == nil || !strings.Contains(err.Error(), "objectives[0].availability") || !strings.Contains(err.Error(), "objectives[1].availability") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParseSLO(f *testing.F) {
	f.Add([]byte(`{"objectives":[{"availability":0.99,"latency":[{"percentile":99,"thresholdMs":100}]}]}`))
	f.Add([]byte(`{"objectives":[{"errorRate":0.5,"shortWindowSeconds":10,"longWindowSeconds":20}]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSLO(b)
		if err != nil {
			return
		}
		for i := range s.Objectives {
			o := &s.Objectives[i]
			if b := o.ErrorBudget(); !(b > 0 && b < 1) {
				t.Fatalf("accepted objective with budget %v", b)
			}
			if o.BucketSeconds() == 0 {
				t.Fatal("zero bucket width accepted")
			}
		}
	})
}
