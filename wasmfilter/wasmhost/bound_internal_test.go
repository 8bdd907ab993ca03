package wasmhost

import (
	"testing"

	"github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// TestHistogramSamplesAreBounded: a long-running host records a sample per
// request; the store keeps the most recent ones only, counts them all, and
// hands every one to the exporter's sink.
func TestHistogramSamplesAreBounded(t *testing.T) {
	var sunk uint64
	s := NewStatsFunc(func(name string, v uint64) {
		if name != "latency" {
			t.Errorf("sink got %q", name)
		}
		sunk++
	})
	m, err := s.define(proxywasm.MetricTypeHistogram, "latency")
	if err != nil {
		t.Fatal(err)
	}
	const n = 10*MaxSamples + 7
	for i := range uint64(n) {
		if err := s.record(m, i); err != nil {
			t.Fatal(err)
		}
		if len(m.Samples) > MaxSamples || cap(m.Samples) > 2*MaxSamples {
			t.Fatalf("after %d samples the store holds %d (cap %d), bound %d", i+1, len(m.Samples), cap(m.Samples), MaxSamples)
		}
	}
	got, ok := s.Get("latency")
	if !ok || got.Recorded != n || sunk != n {
		t.Fatalf("recorded %d, sink saw %d, want %d", got.Recorded, sunk, n)
	}
	// The kept ones are the latest, in order.
	for i, v := range got.Samples {
		if want := uint64(n - len(got.Samples) + i); v != want {
			t.Fatalf("sample %d = %d, want %d", i, v, want)
		}
	}
	if len(got.Samples) < MaxSamples/2 {
		t.Fatalf("only %d recent samples kept, want at least %d", len(got.Samples), MaxSamples/2)
	}
}
