package fanout

import (
	"errors"
	"slices"
	"testing"

	"github.com/maestro-ml/maestro/wasmfilter/fanout/combine"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

// recorder stands in for the host's counters and records every increment
// the filter asks for, refusing a zero one as Envoy's incrementMetric does
// (BadArgument unless offset > 0).
type recorder struct {
	defined    []string
	increments map[string][]uint64
}

type recordedCounter struct {
	r    *recorder
	name string
}

var errZeroIncrement = errors.New("bad argument: counter increment must be > 0")

func (c recordedCounter) Increment(n uint64) error {
	c.r.increments[c.name] = append(c.r.increments[c.name], n)
	if n == 0 {
		return errZeroIncrement
	}
	return nil
}

func newRecordingPlugin() (*plugin, *recorder) {
	r := &recorder{increments: map[string][]uint64{}}
	p := New().NewPluginContext(1).(*plugin)
	p.defineCounter = func(name string) (counter, error) {
		r.defined = append(r.defined, name)
		return recordedCounter{r, name}, nil
	}
	return p, r
}

// TestShadowComparisonNeverIncrementsByZero compares shadows whose answers
// leave some counters at zero (no agreeing rows; no difference at all):
// those counters are defined, so they are exported at 0, but never
// incremented by 0, which Envoy refuses.
func TestShadowComparisonNeverIncrementsByZero(t *testing.T) {
	route := &filterconfig.FanoutRoute{Route: "fraud", Shadows: []filterconfig.Shadow{{Cluster: "fraud.v2", Percent: 100}}}
	answer := func(scores ...float64) *combine.Answer {
		return &combine.Answer{Rows: len(scores), Width: 1, Scores: scores}
	}
	tests := map[string]struct {
		primary, shadow *combine.Answer
		zero            []string // counters that must stay at 0
		want            map[string]uint64
	}{
		"no agreeing rows": {answer(0.9, 0.1, 0.8), answer(0.1, 0.9, 0.2), []string{"class_agree_rows_total"},
			map[string]uint64{"compared_total": 1, "rows_total": 3, "class_disagree_rows_total": 3}},
		"identical answers": {answer(0.9, 0.1), answer(0.9, 0.1), []string{"class_disagree_rows_total", "abs_diff_micros_total"},
			map[string]uint64{"compared_total": 1, "rows_total": 2, "class_agree_rows_total": 2}},
		"no rows": {answer(), answer(), []string{"rows_total", "class_agree_rows_total", "class_disagree_rows_total", "abs_diff_micros_total"},
			map[string]uint64{"compared_total": 1}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, rec := newRecordingPlugin()
			id := p.newShadow(route, &route.Shadows[0])
			c := p.shadows[id]
			c.primary, c.shadow, c.primaryIn, c.shadowIn = tc.primary, tc.shadow, true, true
			p.resolveShadow(id)
			for counter, incs := range rec.increments {
				for _, n := range incs {
					if n == 0 {
						t.Errorf("%s incremented by 0", counter)
					}
				}
			}
			for _, m := range tc.zero {
				name := ShadowMetric(m, "fraud", "fraud.v2")
				if !slices.Contains(rec.defined, name) {
					t.Errorf("%s not defined: a zero counter must still be exported", name)
				}
				if len(rec.increments[name]) != 0 {
					t.Errorf("%s incremented %v, want never", name, rec.increments[name])
				}
			}
			for m, want := range tc.want {
				name := ShadowMetric(m, "fraud", "fraud.v2")
				var got uint64
				for _, n := range rec.increments[name] {
					got += n
				}
				if got != want {
					t.Errorf("%s = %d, want %d", name, got, want)
				}
			}
		})
	}
}
