package metricsource

import (
	"fmt"
	"math"
	"sort"
)

// bucket is a cumulative histogram bucket: Count observations <= UpperBound.
type bucket struct {
	UpperBound float64
	Count      float64
}

// bucketQuantile estimates the q-quantile of cumulative buckets the way
// Prometheus's histogram_quantile does: find the bucket holding the rank,
// interpolate linearly inside it (from 0 for the first bucket when its
// bound is positive), and answer the highest finite bound when the rank
// falls in the +Inf bucket.
func bucketQuantile(q float64, bs []bucket) (float64, error) {
	if !(q > 0 && q < 1) {
		return 0, fmt.Errorf("quantile %v is outside (0, 1)", q)
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].UpperBound < bs[j].UpperBound })
	if len(bs) < 2 || !math.IsInf(bs[len(bs)-1].UpperBound, 1) {
		return 0, fmt.Errorf("%w: histogram needs a +Inf bucket and at least one other", ErrNoData)
	}
	// Counts from different series and scrapes can break monotonicity by
	// a little; Prometheus clamps the same way.
	for i := 1; i < len(bs); i++ {
		if bs[i].Count < bs[i-1].Count {
			bs[i].Count = bs[i-1].Count
		}
	}
	total := bs[len(bs)-1].Count
	if total <= 0 {
		return 0, fmt.Errorf("%w: no observations in the window", ErrNoData)
	}
	rank := q * total
	i := sort.Search(len(bs), func(i int) bool { return bs[i].Count >= rank })
	if i == len(bs)-1 {
		return bs[len(bs)-2].UpperBound, nil
	}
	lower, below := 0.0, 0.0
	if i > 0 {
		lower, below = bs[i-1].UpperBound, bs[i-1].Count
	} else if bs[0].UpperBound <= 0 {
		return bs[0].UpperBound, nil
	}
	in := bs[i].Count - below
	if in <= 0 {
		return bs[i].UpperBound, nil
	}
	return lower + (bs[i].UpperBound-lower)*(rank-below)/in, nil
}
