package xgboost

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds mutated models to the parser: none may panic, and any
// model it accepts must evaluate rows of zeros and of NaN without panicking
// or looping.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	refused, _ := filepath.Glob(filepath.Join("testdata", "refused", "*.json"))
	for _, p := range append(seeds, refused...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) < 4<<10 { // small seeds mutate faster
			f.Add(b)
		}
	}
	f.Add([]byte(`{"learner": {}, "version": [1, 7, 4]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := parse(data)
		if err != nil {
			return
		}
		ref := newReference(t, data)
		for _, fill := range []float32{0, float32(math.NaN()), 1e30, -1e30, float32(math.Inf(1))} {
			x := make([]float32, 2*e.numFeature)
			for i := range x {
				x[i] = fill
			}
			x[0] = 0.5
			margin := make([]float32, 2*e.numGroup)
			out := make([]float32, 2*e.outWidth())
			e.predict(x, 2, margin, out, make([]float32, e.scratchLen(2)))
			// The flattened walk must agree bit for bit with XGBoost's layout.
			want := ref.margins(x, 2)
			for i, w := range want {
				if math.Float32bits(margin[i]) != math.Float32bits(w) && !(margin[i] != margin[i] && w != w) {
					t.Fatalf("fill %v: margin[%d] = %v, reference walk %v", fill, i, margin[i], w)
				}
			}
		}
	})
}

// FuzzWalk reads the fuzzer's bytes as float32 feature rows for the fraud
// v1 model and checks the flattened walk against XGBoost's layout bit for
// bit, whatever the values (NaN payloads, infinities, denormals).
func FuzzWalk(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "examples", "models", "fraud", "1", DefaultFile))
	if err != nil {
		f.Fatal(err)
	}
	ref := newReference(f, data)
	e := ref.e
	row := make([]byte, 4*e.numFeature)
	f.Add(row)
	for i := range row {
		row[i] = 0xff // NaN with every payload bit set
	}
	f.Add(row)
	f.Fuzz(func(t *testing.T, b []byte) {
		rows := len(b) / (4 * e.numFeature)
		if rows == 0 {
			return
		}
		x := make([]float32, rows*e.numFeature)
		for i := range x {
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		margin := make([]float32, rows*e.numGroup)
		out := make([]float32, rows*e.outWidth())
		e.predict(x, rows, margin, out, make([]float32, e.scratchLen(rows)))
		for i, w := range ref.margins(x, rows) {
			if math.Float32bits(margin[i]) != math.Float32bits(w) {
				t.Fatalf("row %d: margin %v, reference %v", i/e.numGroup, margin[i], w)
			}
		}
	})
}
