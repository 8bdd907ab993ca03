package xgboost

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

// reference is an oracle for the flattened evaluator: it walks the trees as
// XGBoost's JSON lays them out (left_children, right_children,
// default_left), one row and one tree at a time, with plain branches.
type reference struct {
	trees []treeJSON
	info  []int
	e     *ensemble // for the base margin and shape only
}

func newReference(t testing.TB, data []byte) *reference {
	t.Helper()
	e, err := parse(data)
	if err != nil {
		t.Fatal(err)
	}
	clean, _ := replaceNonFinite(data)
	var doc document
	if err := json.Unmarshal(clean, &doc); err != nil {
		t.Fatal(err)
	}
	gb := doc.Learner.GradientBooster
	return &reference{trees: gb.Model.Trees, info: gb.Model.TreeInfo, e: e}
}

// margins returns numGroup summed margins per row, in tree order.
func (r *reference) margins(x []float32, rows int) []float32 {
	nf, ng := r.e.numFeature, r.e.numGroup
	out := make([]float32, rows*ng)
	for row := range rows {
		copy(out[row*ng:], r.e.baseMargin)
		feats := x[row*nf : (row+1)*nf]
		for t := range r.trees {
			out[row*ng+r.info[t]] += walkJSON(&r.trees[t], feats)
		}
	}
	return out
}

func walkJSON(t *treeJSON, x []float32) float32 {
	n := int32(0)
	for range len(t.LeftChildren) {
		if t.LeftChildren[n] == -1 {
			return t.SplitConditions[n]
		}
		v := x[t.SplitIndices[n]]
		switch {
		case v != v:
			if t.DefaultLeft[n] {
				n = t.LeftChildren[n]
			} else {
				n = t.RightChildren[n]
			}
		case v < t.SplitConditions[n]:
			n = t.LeftChildren[n]
		default:
			n = t.RightChildren[n]
		}
	}
	panic("tree walk did not reach a leaf")
}

// TestAgainstReference compares the flattened walk bit for bit with the
// oracle on every committed model, for rows built to hit the edges: values
// exactly at thresholds and one float32 step either side, NaN, infinities
// and signed zeros.
func TestAgainstReference(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, m := range []string{"fraud/1", "fraud/2", "churn/1", "churn/2"} {
		paths = append(paths, filepath.Join("..", "..", "..", "examples", "models", m, DefaultFile))
	}
	for _, p := range paths {
		if strings.HasSuffix(p, ".fixture.json") {
			continue
		}
		t.Run(p, func(t *testing.T) {
			data := mustRead(t, p)
			ref := newReference(t, data)
			e := ref.e
			var thresholds []float32
			for _, tr := range ref.trees {
				for n, l := range tr.LeftChildren {
					if l != -1 {
						thresholds = append(thresholds, tr.SplitConditions[n])
					}
				}
			}
			rng := rand.New(rand.NewPCG(7, uint64(len(data))))
			inf := float32(math.Inf(1))
			specials := []float32{float32(math.NaN()), inf, -inf, 0, float32(math.Copysign(0, -1))}
			const rows = 300
			x := make([]float32, rows*e.numFeature)
			for i := range x {
				switch k := rng.IntN(10); {
				case k < 5 && len(thresholds) > 0:
					th := thresholds[rng.IntN(len(thresholds))]
					x[i] = [3]float32{th, math.Nextafter32(th, -inf), math.Nextafter32(th, inf)}[rng.IntN(3)]
				case k < 7:
					x[i] = specials[rng.IntN(len(specials))]
				default:
					x[i] = float32(rng.NormFloat64() * 3)
				}
			}
			margin := make([]float32, rows*e.numGroup)
			out := make([]float32, rows*e.outWidth())
			e.predict(x, rows, margin, out, make([]float32, e.scratchLen(rows)))
			want := ref.margins(x, rows)
			for i, w := range want {
				if math.Float32bits(margin[i]) != math.Float32bits(w) {
					t.Fatalf("margin[%d] (row %d) = %v, reference %v", i, i/e.numGroup, margin[i], w)
				}
			}
		})
	}
}
