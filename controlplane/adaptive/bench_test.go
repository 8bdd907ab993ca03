package adaptive

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// BenchmarkObserveLabel is the per-request cost of feeding a three-member
// ensemble's answers and its label.
func BenchmarkObserveLabel(b *testing.B) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tu := New(Config{Now: clk.now})
	m := meshOf(b, 0.5)
	_ = tu.Evaluate(context.Background(), m)
	answers := []Answer{{Member: members[0], Value: 1}, {Member: members[1], Value: 1}, {Member: members[2], Value: 0}}
	ids := make([]string, 4096)
	for i := range ids {
		ids[i] = "req-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		id := ids[i%len(ids)]
		tu.Observe("fraud", id, answers, 1)
		_ = tu.Label(id, 1)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
