package xgboost

import (
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
