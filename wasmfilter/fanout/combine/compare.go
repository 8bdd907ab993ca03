package combine

import (
	"fmt"
	"math"
)

// Comparison is how a shadow's answer differs from the primary's, row by
// row: whether the classes agree, and the absolute score differences.
type Comparison struct {
	// Rows compared.
	Rows int
	// Agree counts rows whose class is the same in both answers.
	Agree int
	// SumAbsDiff adds up |primary - shadow| over every score.
	SumAbsDiff float64
	// MaxAbsDiff is the largest |primary - shadow|.
	MaxAbsDiff float64
}

// Compare measures the shadow's answer against the primary's.
//
// # Errors
//
// An error when the two answers have different shapes; nothing is
// compared then.
func Compare(primary, shadow Answer, threshold float64) (Comparison, error) {
	if primary.Rows != shadow.Rows || primary.Width != shadow.Width ||
		len(primary.Scores) != primary.Rows*primary.Width || len(shadow.Scores) != len(primary.Scores) {
		return Comparison{}, fmt.Errorf("shadow answered %d rows of %d scores, primary %d rows of %d",
			shadow.Rows, shadow.Width, primary.Rows, primary.Width)
	}
	c := Comparison{Rows: primary.Rows}
	w := primary.Width
	for r := range primary.Rows {
		p, s := primary.Scores[r*w:(r+1)*w], shadow.Scores[r*w:(r+1)*w]
		if Class(p, threshold) == Class(s, threshold) {
			c.Agree++
		}
		for k := range p {
			d := math.Abs(p[k] - s[k])
			c.SumAbsDiff += d
			c.MaxAbsDiff = math.Max(c.MaxAbsDiff, d)
		}
	}
	return c, nil
}
