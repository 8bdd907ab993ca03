package combine

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

func col(member int, weight float64, scores ...float64) Answer {
	return Answer{Member: member, Label: string(rune('a' + member)), Weight: weight, Rows: len(scores), Width: 1, Scores: scores}
}

func mat(member int, weight float64, width int, scores ...float64) Answer {
	return Answer{Member: member, Label: string(rune('a' + member)), Weight: weight, Rows: len(scores) / width, Width: width, Scores: scores}
}

func TestCombine(t *testing.T) {
	sigmoid := func(z float64) float64 { return 1 / (1 + math.Exp(-z)) }
	tests := map[string]struct {
		s       filterconfig.Strategy
		answers []Answer
		opts    Options
		want    Result
	}{
		"mean": {s: filterconfig.StrategyMean,
			answers: []Answer{col(0, 5, 0.2, 0.9), col(1, 1, 0.4, 0.3), col(2, 1, 0.6, 0.0)},
			want:    Result{Rows: 2, Width: 1, Values: []float64{0.4, 0.4}}},
		"empty strategy is mean": {s: "",
			answers: []Answer{col(0, 0, 1), col(1, 0, 0)},
			want:    Result{Rows: 1, Width: 1, Values: []float64{0.5}}},
		"weighted mean": {s: filterconfig.StrategyWeightedMean,
			answers: []Answer{col(0, 3, 0.2, 1), col(1, 1, 0.6, 0)},
			want:    Result{Rows: 2, Width: 1, Values: []float64{0.3, 0.75}}},
		"weighted mean over classes": {s: filterconfig.StrategyWeightedMean,
			answers: []Answer{mat(0, 1, 3, 0.1, 0.2, 0.7), mat(1, 3, 3, 0.5, 0.3, 0.2)},
			want:    Result{Rows: 1, Width: 3, Values: []float64{0.4, 0.275, 0.325}}},
		"majority vote binary": {s: filterconfig.StrategyMajorityVote, opts: Options{Threshold: 0.5},
			answers: []Answer{col(0, 1, 0.9, 0.1, 0.5), col(1, 1, 0.8, 0.2, 0.4), col(2, 1, 0.1, 0.7, 0.4)},
			want:    Result{Rows: 3, Width: 1, Values: []float64{1, 0, 0}, Classes: true}},
		"majority vote threshold": {s: filterconfig.StrategyMajorityVote, opts: Options{Threshold: 0.05},
			answers: []Answer{col(0, 1, 0.1), col(1, 1, 0.06), col(2, 1, 0.01)},
			want:    Result{Rows: 1, Width: 1, Values: []float64{1}, Classes: true}},
		"majority vote tie goes to lowest class": {s: filterconfig.StrategyMajorityVote, opts: Options{Threshold: 0.5},
			answers: []Answer{col(0, 1, 0.9), col(1, 1, 0.1)},
			want:    Result{Rows: 1, Width: 1, Values: []float64{0}, Classes: true}},
		"majority vote multiclass": {s: filterconfig.StrategyMajorityVote,
			answers: []Answer{mat(0, 1, 3, 0.1, 0.2, 0.7), mat(1, 1, 3, 0.5, 0.3, 0.2), mat(2, 1, 3, 0.2, 0.1, 0.7)},
			want:    Result{Rows: 1, Width: 1, Values: []float64{2}, Classes: true}},
		"weighted vote outvotes the majority": {s: filterconfig.StrategyWeightedVote, opts: Options{Threshold: 0.5},
			answers: []Answer{col(0, 5, 0.9), col(1, 1, 0.1), col(2, 1, 0.2)},
			want:    Result{Rows: 1, Width: 1, Values: []float64{1}, Classes: true}},
		"max confidence binary": {s: filterconfig.StrategyMaxConfidence,
			answers: []Answer{col(0, 1, 0.7, 0.45), col(1, 1, 0.05, 0.6), col(2, 1, 0.9, 0.5)},
			want:    Result{Rows: 2, Width: 1, Values: []float64{0.05, 0.6}}},
		"max confidence tie keeps earlier member": {s: filterconfig.StrategyMaxConfidence,
			answers: []Answer{col(0, 1, 0.2), col(1, 1, 0.8)},
			want:    Result{Rows: 1, Width: 1, Values: []float64{0.2}}},
		"max confidence multiclass": {s: filterconfig.StrategyMaxConfidence,
			answers: []Answer{mat(0, 1, 2, 0.6, 0.4, 0.5, 0.5), mat(1, 1, 2, 0.3, 0.7, 0.9, 0.1)},
			want:    Result{Rows: 2, Width: 2, Values: []float64{0.3, 0.7, 0.9, 0.1}}},
		"stacking": {s: filterconfig.StrategyStacking,
			opts:    Options{Members: 2, Stacking: &filterconfig.Stacking{Weights: []float64{2, -1}, Bias: 0.5}},
			answers: []Answer{col(0, 0, 0.25, 1), col(1, 0, 0.5, 0)},
			want:    Result{Rows: 2, Width: 1, Values: []float64{sigmoid(0.5 + 0.5 - 0.5), sigmoid(2.5)}}},
		"zero rows": {s: filterconfig.StrategyMean,
			answers: []Answer{{Rows: 0, Width: 1}, {Rows: 0, Width: 1}},
			want:    Result{Rows: 0, Width: 1, Values: []float64{}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Combine(tc.s, tc.answers, tc.opts)
			if err != nil {
				t.Fatalf("Combine: %v", err)
			}
			if got.Rows != tc.want.Rows || got.Width != tc.want.Width || got.Classes != tc.want.Classes || len(got.Values) != len(tc.want.Values) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got.Values {
				if math.Abs(got.Values[i]-tc.want.Values[i]) > 1e-12 {
					t.Fatalf("value %d = %v, want %v (all %v)", i, got.Values[i], tc.want.Values[i], got.Values)
				}
			}
		})
	}
}

func TestCombineErrors(t *testing.T) {
	stacking := &filterconfig.Stacking{Weights: []float64{1, 1}}
	tests := map[string]struct {
		s       filterconfig.Strategy
		answers []Answer
		opts    Options
		want    string
	}{
		"no answers":        {s: filterconfig.StrategyMean, want: ErrNoAnswers.Error()},
		"shape mismatch":    {s: filterconfig.StrategyMean, answers: []Answer{col(0, 1, 1, 2), col(1, 1, 1)}, want: "member b answered 1 rows of 1 scores but member a 2 rows of 1"},
		"bad fill":          {s: filterconfig.StrategyMean, answers: []Answer{{Label: "x", Rows: 2, Width: 1, Scores: []float64{1}}}, want: "member x: 1 scores do not fill 2 rows of 1"},
		"zero width":        {s: filterconfig.StrategyMean, answers: []Answer{{Label: "x", Rows: 0, Width: 0}}, want: "do not fill 0 rows of 0"},
		"zero weight mean":  {s: filterconfig.StrategyWeightedMean, answers: []Answer{col(0, 0, 1)}, want: "total weight of 0"},
		"zero weight vote":  {s: filterconfig.StrategyWeightedVote, answers: []Answer{col(0, 0, 1)}, want: "total voting weight of 0"},
		"stacking missing":  {s: filterconfig.StrategyStacking, opts: Options{Members: 2, Stacking: stacking}, answers: []Answer{col(0, 0, 1)}, want: "stacking needs all 2 members' scores, got 1"},
		"stacking wide":     {s: filterconfig.StrategyStacking, opts: Options{Members: 2, Stacking: stacking}, answers: []Answer{mat(0, 0, 2, 1, 0), mat(1, 0, 2, 1, 0)}, want: "stacking takes one score per row, member a gave 2"},
		"stacking no model": {s: filterconfig.StrategyStacking, answers: []Answer{col(0, 0, 1)}, want: "stacking without a meta-model"},
		"unknown":           {s: "median", answers: []Answer{col(0, 0, 1)}, want: `unknown strategy "median"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Combine(tc.s, tc.answers, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Combine error = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := Combine(filterconfig.StrategyMean, nil, Options{}); !errors.Is(err, ErrNoAnswers) {
		t.Errorf("errors.Is(ErrNoAnswers) = false for %v", err)
	}
}

func TestCompare(t *testing.T) {
	tests := map[string]struct {
		primary, shadow Answer
		want            Comparison
	}{
		"binary": {primary: col(0, 0, 0.9, 0.2, 0.55), shadow: col(1, 0, 0.7, 0.6, 0.45),
			want: Comparison{Rows: 3, Agree: 1, SumAbsDiff: 0.2 + 0.4 + 0.1, MaxAbsDiff: 0.4}},
		"multiclass": {primary: mat(0, 0, 3, 0.1, 0.2, 0.7), shadow: mat(1, 0, 3, 0.2, 0.1, 0.7),
			want: Comparison{Rows: 1, Agree: 1, SumAbsDiff: 0.2, MaxAbsDiff: 0.1}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Compare(tc.primary, tc.shadow, 0.5)
			if err != nil {
				t.Fatal(err)
			}
			if got.Rows != tc.want.Rows || got.Agree != tc.want.Agree ||
				math.Abs(got.SumAbsDiff-tc.want.SumAbsDiff) > 1e-12 || math.Abs(got.MaxAbsDiff-tc.want.MaxAbsDiff) > 1e-12 {
				t.Fatalf("Compare = %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := Compare(col(0, 0, 1, 2), col(1, 0, 1), 0.5); err == nil || !strings.Contains(err.Error(), "shadow answered 1 rows of 1 scores, primary 2 rows of 1") {
		t.Errorf("shape mismatch error = %v", err)
	}
}

func BenchmarkCombine(b *testing.B) {
	const rows = 64
	answers := make([]Answer, 3)
	for i := range answers {
		s := make([]float64, rows)
		for r := range s {
			s[r] = float64((r*7+i*3)%10) / 10
		}
		answers[i] = col(i, float64(i+1), s...)
	}
	opts := Options{Threshold: 0.5, Members: 3, Stacking: &filterconfig.Stacking{Weights: []float64{1, 2, 3}}}
	for _, s := range filterconfig.Strategies() {
		b.Run(string(s), func(b *testing.B) {
			for b.Loop() {
				if _, err := Combine(s, answers, opts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/rows, "ns/row")
		})
	}
}
