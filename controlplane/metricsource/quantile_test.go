package metricsource

import (
	"errors"
	"math"
	"testing"
)

func TestBucketQuantile(t *testing.T) {
	inf := math.Inf(1)
	// 50 observations <= 0.1, 40 in (0.1, 0.25], 10 in (0.25, 1].
	hist := func() []bucket { return []bucket{{1, 100}, {0.1, 50}, {inf, 100}, {0.25, 90}} }
	for _, c := range []struct {
		name string
		q    float64
		bs   []bucket
		want float64
		err  error
	}{
		{name: "first bucket from zero", q: 0.25, bs: hist(), want: 0.05},
		{name: "inside second bucket", q: 0.7, bs: hist(), want: 0.175},
		{name: "bucket edge", q: 0.9, bs: hist(), want: 0.25},
		{name: "last finite bucket", q: 0.95, bs: hist(), want: 0.625},
		{name: "rank in +Inf bucket", q: 0.99, bs: []bucket{{0.1, 50}, {inf, 100}}, want: 0.1},
		{name: "non-monotonic counts clamped", q: 0.5, bs: []bucket{{1, 10}, {2, 8}, {inf, 10}}, want: 0.5},
		{name: "no observations", q: 0.5, bs: []bucket{{1, 0}, {inf, 0}}, err: ErrNoData},
		{name: "no +Inf bucket", q: 0.5, bs: []bucket{{1, 3}}, err: ErrNoData},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := bucketQuantile(c.q, c.bs)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("got %v, %v; want error %v", got, err, c.err)
				}
				return
			}
			if err != nil || math.Abs(got-c.want) > 1e-9 {
				t.Fatalf("got %v, %v; want %v", got, err, c.want)
			}
		})
	}
	if _, err := bucketQuantile(1, hist()); err == nil {
		t.Error("q = 1 accepted")
	}
}
