// Package combine merges the outputs of an ensemble's members into one
// answer with the strategies of filterconfig (mean, weighted mean, majority
// and weighted vote, max confidence, logistic stacking).
//
// It is pure Go with no host calls, so the fanout filter uses it inside
// wasm and tests use it natively to compute the answer an ensemble must
// give from each member's own answer.
package combine

import (
	"errors"
	"fmt"
	"math"

	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

// ErrNoAnswers is returned when there is nothing to combine.
var ErrNoAnswers = errors.New("no answers to combine")

// Answer is one member's output tensor, flattened row-major into Rows rows
// of Width scores each.
type Answer struct {
	// Member is the member's index in the route's Members; stacking uses
	// it to pick the member's weight.
	Member int
	// Label names the member in errors.
	Label string
	// Weight counts in the weighted strategies.
	Weight float64
	Rows   int
	Width  int
	Scores []float64
}

// Options carries the route settings a strategy may need.
type Options struct {
	// Threshold is the class boundary of single scores (Width 1).
	Threshold float64
	// Stacking is the meta-model of StrategyStacking.
	Stacking *filterconfig.Stacking
	// Members is the route's member count; stacking needs every one.
	Members int
}

// Result is the combined answer: Rows rows of Width values. Classes is set
// by the vote strategies, whose values are class indices (Width 1).
type Result struct {
	Rows    int
	Width   int
	Values  []float64
	Classes bool
}

// Combine merges answers (in member order) with strategy s.
//
// # Errors
//
// ErrNoAnswers when answers is empty; an error naming the members when
// their shapes differ, when weights sum to zero, or when stacking misses a
// member or gets more than one score per row.
func Combine(s filterconfig.Strategy, answers []Answer, opts Options) (Result, error) {
	if len(answers) == 0 {
		return Result{}, ErrNoAnswers
	}
	first := answers[0]
	for _, a := range answers {
		if a.Rows < 0 || a.Width < 1 || len(a.Scores) != a.Rows*a.Width {
			return Result{}, fmt.Errorf("member %s: %d scores do not fill %d rows of %d", a.Label, len(a.Scores), a.Rows, a.Width)
		}
		if a.Rows != first.Rows || a.Width != first.Width {
			return Result{}, fmt.Errorf("member %s answered %d rows of %d scores but member %s %d rows of %d",
				a.Label, a.Rows, a.Width, first.Label, first.Rows, first.Width)
		}
	}
	switch s {
	case filterconfig.StrategyMean, "":
		return weightedMean(answers, func(Answer) float64 { return 1 })
	case filterconfig.StrategyWeightedMean:
		return weightedMean(answers, func(a Answer) float64 { return a.Weight })
	case filterconfig.StrategyMajorityVote:
		return vote(answers, opts.Threshold, func(Answer) float64 { return 1 })
	case filterconfig.StrategyWeightedVote:
		return vote(answers, opts.Threshold, func(a Answer) float64 { return a.Weight })
	case filterconfig.StrategyMaxConfidence:
		return maxConfidence(answers), nil
	case filterconfig.StrategyStacking:
		return stack(answers, opts)
	}
	return Result{}, fmt.Errorf("unknown strategy %q", s)
}

func weightedMean(answers []Answer, weight func(Answer) float64) (Result, error) {
	first := answers[0]
	total := 0.0
	for _, a := range answers {
		total += weight(a)
	}
	if total <= 0 {
		return Result{}, fmt.Errorf("the %d answering members have a total weight of %v", len(answers), total)
	}
	out := make([]float64, len(first.Scores))
	for _, a := range answers {
		w := weight(a)
		for j, v := range a.Scores {
			out[j] += w * v
		}
	}
	for j := range out {
		out[j] /= total
	}
	return Result{Rows: first.Rows, Width: first.Width, Values: out}, nil
}

// Class is the class a row of scores stands for: the index of the highest
// score (the first on ties), or for a single score 1 when it is at least
// threshold and 0 below.
func Class(row []float64, threshold float64) int {
	if len(row) == 1 {
		if row[0] >= threshold {
			return 1
		}
		return 0
	}
	best := 0
	for k, v := range row {
		if v > row[best] {
			best = k
		}
	}
	return best
}

// Confidence is how sure a row of scores is of its class: the highest score,
// or for a single score p, max(p, 1-p).
func Confidence(row []float64) float64 {
	if len(row) == 1 {
		return math.Max(row[0], 1-row[0])
	}
	best := math.Inf(-1)
	for _, v := range row {
		best = math.Max(best, v)
	}
	return best
}

func vote(answers []Answer, threshold float64, weight func(Answer) float64) (Result, error) {
	first := answers[0]
	classes := first.Width
	if classes == 1 {
		classes = 2
	}
	total := 0.0
	for _, a := range answers {
		total += weight(a)
	}
	if total <= 0 {
		return Result{}, fmt.Errorf("the %d answering members have a total voting weight of %v", len(answers), total)
	}
	out := make([]float64, first.Rows)
	tally := make([]float64, classes)
	for r := range first.Rows {
		clear(tally)
		for _, a := range answers {
			tally[Class(a.Scores[r*a.Width:(r+1)*a.Width], threshold)] += weight(a)
		}
		win := 0
		for k, v := range tally {
			if v > tally[win] {
				win = k
			}
		}
		out[r] = float64(win)
	}
	return Result{Rows: first.Rows, Width: 1, Values: out, Classes: true}, nil
}

func maxConfidence(answers []Answer) Result {
	first := answers[0]
	w := first.Width
	out := make([]float64, len(first.Scores))
	for r := range first.Rows {
		best, bestConf := 0, math.Inf(-1)
		for i, a := range answers {
			if c := Confidence(a.Scores[r*w : (r+1)*w]); c > bestConf {
				best, bestConf = i, c
			}
		}
		copy(out[r*w:(r+1)*w], answers[best].Scores[r*w:(r+1)*w])
	}
	return Result{Rows: first.Rows, Width: w, Values: out}
}

func stack(answers []Answer, opts Options) (Result, error) {
	m := opts.Stacking
	if m == nil {
		return Result{}, errors.New("stacking without a meta-model")
	}
	if len(answers) != opts.Members || len(m.Weights) != opts.Members {
		return Result{}, fmt.Errorf("stacking needs all %d members' scores, got %d", opts.Members, len(answers))
	}
	first := answers[0]
	if first.Width != 1 {
		return Result{}, fmt.Errorf("stacking takes one score per row, member %s gave %d", first.Label, first.Width)
	}
	out := make([]float64, first.Rows)
	for r := range out {
		z := m.Bias
		for _, a := range answers {
			if a.Member < 0 || a.Member >= len(m.Weights) {
				return Result{}, fmt.Errorf("member %s has no stacking weight", a.Label)
			}
			z += m.Weights[a.Member] * a.Scores[r]
		}
		out[r] = 1 / (1 + math.Exp(-z))
	}
	return Result{Rows: first.Rows, Width: 1, Values: out}, nil
}
