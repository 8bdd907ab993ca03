package adaptive

import (
	"github.com/maestro-ml/maestro/internal/fakes"

	"context"
	"testing"
	"time"
)

// TestCountsAloneMoveWeights feeds only the data plane's counters: a
// member timing out on every call falls to the minimum weight in one
// interval (smoothing 1), the others keep the maximum, and the weight
// comes back once it answers again.
func TestCountsAloneMoveWeights(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	rec := &fakes.Audit{}
	tu := New(Config{Now: clk.now, Audit: rec})
	m := meshOf(t, 1)
	ctx := context.Background()
	_ = tu.Evaluate(ctx, m)
	for _, tc := range []struct {
		name             string
		timeouts         int
		answered         int
		wantB, wantOther float64
	}{
		{"b times out", 50, 0, 0.05, 1},
		{"b answers again", 0, 50, 1, 1},
	} {
		tu.ObserveCounts("fraud", members[0], 50, 0, 0)
		tu.ObserveCounts("fraud", members[1], tc.answered, tc.timeouts, 0)
		tu.ObserveCounts("fraud", members[2], 40, 0, 10)
		tu.ObserveCounts("fraud", "unknown/member", 10, 0, 0) // ignored
		tu.ObserveCounts("other", members[0], 10, 0, 0)       // ignored
		clk.t = clk.t.Add(10 * time.Second)
		if err := tu.Evaluate(ctx, m); err != nil {
			t.Fatal(err)
		}
		st := tu.View().Routes["fraud"]
		if st[0].Weight != tc.wantOther || st[1].Weight != tc.wantB {
			t.Errorf("%s: weights %+v, want a %v and b %v", tc.name, st, tc.wantOther, tc.wantB)
		}
		// c fails a fifth of its calls: quality 0.8, weight between the bounds.
		if want := 0.05 + 0.95*(0.8-0.5)/(1-0.5); st[2].Weight < want-1e-9 || st[2].Weight > want+1e-9 {
			t.Errorf("%s: c's weight %v, want %v", tc.name, st[2].Weight, want)
		}
	}
	if len(rec.Events()) == 0 || rec.Events()[0].Details["counted"] == "" || rec.Events()[0].Details["basis"] != "answered share" {
		t.Errorf("audit events %+v: want the counted calls and their basis", rec.Events())
	}
}
