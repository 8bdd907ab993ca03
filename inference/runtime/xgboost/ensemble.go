package xgboost

import (
	"fmt"
	"math"
)

// transform is an objective's map from summed margins to predictions.
type transform uint8

const (
	identity transform = iota // regression, raw margins
	sigmoid                   // logistic objectives: 1/(1+exp(-m))
	softprob                  // multi:softprob: softmax over the class margins
	softmax                   // multi:softmax: index of the largest class margin
)

// node is one flattened tree node; all trees live in one slice with each
// node's two children adjacent. A step down the tree is
//
//	slot = !(x[feat]*mul < cond); next = left + slot
//
// with no branch to mispredict and no separate test for missing values:
//   - a split whose missing values go right stores mul = 1, the threshold
//     and its children in order; x < threshold picks the left child, and
//     NaN compares false so it takes the right;
//   - a split whose missing values go left (default_left) stores mul = -1,
//     cond = nextUp(-threshold) and its children swapped: -x < nextUp(-t)
//     holds exactly when x >= t (right child, now first), and NaN again
//     takes the second slot, now the left child;
//   - a leaf points at itself, tests a sentinel feature that is always 0
//     (appended to every row) against +Inf, and keeps its value in mul, so
//     extra steps stay put: every row walks a tree's full depth.
//
// Thresholds stay float32 and the comparison is float32, as in XGBoost.
type node struct {
	cond float32 // see above; +Inf at a leaf
	feat uint32  // feature index; the sentinel index at a leaf
	left int32   // index of the first child; the node itself at a leaf
	mul  float32 // +1 or -1 at a split; the leaf value at a leaf
}

// ensemble is a parsed, validated gbtree model ready to evaluate.
type ensemble struct {
	nodes      []node  // nodes[0] is a leaf of value 0 that pads quads of trees
	roots      []int32 // per tree: index of its root in nodes
	depths     []int32 // per tree: steps from the root to its deepest leaf
	groups     []int32 // per tree: output group (class) it adds to
	numFeature int
	numGroup   int
	baseMargin []float32 // per group: base_score in margin space
	transform  transform
	objective  string
	version    []int
	maxDepth   int
	quads      []quad
}

// quad is four consecutive trees walked together for one row: four
// independent chains of loads that the CPU overlaps.
type quad struct {
	roots  [4]int32 // padded with 0, the empty leaf
	groups [4]int32
	depth  int32 // the deepest of the four
}

// outWidth is the number of values predict writes per row.
func (e *ensemble) outWidth() int {
	if e.transform == softmax {
		return 1
	}
	return e.numGroup
}

// memoryBytes estimates the heap the ensemble holds.
func (e *ensemble) memoryBytes() int64 {
	return int64(len(e.nodes))*16 + int64(len(e.roots)+len(e.depths)+len(e.groups)+len(e.baseMargin))*4 +
		int64(len(e.quads))*36 + 256
}

// blockRows is how many rows walk a quad of trees before moving to the
// next, so those trees stay in L1 cache across rows.
const blockRows = 64

// scratchLen is the length of the scratch buffer margins needs.
func (e *ensemble) scratchLen(rows int) int {
	return min(rows, blockRows) * (e.numFeature + 1)
}

// margins adds every tree's leaf for each of rows rows of x (numFeature
// values each) to out (numGroup values per row), which it first sets to the
// base margin. Sums are float32, tree by tree in model order, as XGBoost
// accumulates them. scratch (scratchLen(rows) long) holds a block of rows
// with the sentinel feature appended.
func (e *ensemble) margins(x []float32, rows int, out, scratch []float32) {
	nf, ng := e.numFeature, e.numGroup
	w := nf + 1
	for r := 0; r < rows; r++ {
		copy(out[r*ng:(r+1)*ng], e.baseMargin)
	}
	nodes := e.nodes
	for start := 0; start < rows; start += blockRows {
		n := min(blockRows, rows-start)
		for r := range n {
			copy(scratch[r*w:r*w+nf], x[(start+r)*nf:(start+r+1)*nf])
			scratch[r*w+nf] = 0
		}
		for qi := range e.quads {
			q := &e.quads[qi]
			for r := range n {
				row := scratch[r*w : (r+1)*w]
				i0, i1, i2, i3 := q.roots[0], q.roots[1], q.roots[2], q.roots[3]
				for range q.depth {
					i0 = next(nodes, row, i0)
					i1 = next(nodes, row, i1)
					i2 = next(nodes, row, i2)
					i3 = next(nodes, row, i3)
				}
				o := out[(start+r)*ng : (start+r+1)*ng]
				o[q.groups[0]] += nodes[i0].mul
				o[q.groups[1]] += nodes[i1].mul
				o[q.groups[2]] += nodes[i2].mul
				o[q.groups[3]] += nodes[i3].mul
			}
		}
	}
}

// next is one step down a tree from node i for row (sentinel included).
func next(nodes []node, row []float32, i int32) int32 {
	n := &nodes[i]
	var slot int32 // NaN compares false: the second slot
	if !(row[n.feat]*n.mul < n.cond) {
		slot = 1
	}
	return n.left + slot
}

// predict evaluates rows rows of x into out (outWidth values per row),
// using margin (numGroup values per row) and scratch (scratchLen(rows)).
func (e *ensemble) predict(x []float32, rows int, margin, out, scratch []float32) {
	e.margins(x, rows, margin, scratch)
	ng := e.numGroup
	switch e.transform {
	case identity:
		copy(out, margin)
	case sigmoid:
		for i, m := range margin {
			out[i] = float32(1 / (1 + math.Exp(-float64(m))))
		}
	case softprob:
		for r := 0; r < rows; r++ {
			softmaxRow(margin[r*ng:(r+1)*ng], out[r*ng:(r+1)*ng])
		}
	case softmax:
		for r := 0; r < rows; r++ {
			out[r] = float32(argmax(margin[r*ng : (r+1)*ng]))
		}
	}
}

func softmaxRow(m, out []float32) {
	hi := m[0]
	for _, v := range m[1:] {
		hi = max(hi, v)
	}
	var sum float64
	for i, v := range m {
		ev := math.Exp(float64(v - hi))
		out[i] = float32(ev)
		sum += ev
	}
	for i := range out {
		out[i] = float32(float64(out[i]) / sum)
	}
}

// argmax is the index of the first largest value, as std::max_element
// picks it in XGBoost.
func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// builder flattens trees into an ensemble.
type builder struct {
	e     *ensemble
	seen  []bool
	queue []pending
}

type pending struct {
	src, dst int32
	depth    int
}

func newBuilder(numFeature, numGroup int) *builder {
	return &builder{e: &ensemble{
		numFeature: numFeature,
		numGroup:   numGroup,
		baseMargin: make([]float32, numGroup),
		nodes:      []node{{cond: float32(math.Inf(1)), feat: uint32(numFeature)}}, // mul 0: the padding leaf
	}}
}

// build groups the trees into quads, in model order.
func (b *builder) build() *ensemble {
	e := b.e
	for t := 0; t < len(e.roots); t += 4 {
		var q quad
		for k := 0; k < 4 && t+k < len(e.roots); k++ {
			q.roots[k] = e.roots[t+k]
			q.groups[k] = e.groups[t+k]
			q.depth = max(q.depth, e.depths[t+k])
		}
		e.quads = append(e.quads, q)
	}
	return e
}

// add validates one tree and appends it breadth first, so siblings are
// adjacent and the tree is one contiguous run. Unreachable (deleted) nodes
// are dropped.
func (b *builder) add(path string, t *treeJSON, group int) error {
	n, err := intParam(path+".tree_param.num_nodes", t.Param.NumNodes, 1, maxNodes)
	if err != nil {
		return err
	}
	switch t.Param.SizeLeafVector {
	case "", "0", "1":
	default:
		return fmt.Errorf("%s.tree_param.size_leaf_vector: %s: vector-leaf (multi-target) trees are not supported", path, t.Param.SizeLeafVector)
	}
	for name, l := range map[string]int{
		"left_children":    len(t.LeftChildren),
		"right_children":   len(t.RightChildren),
		"split_indices":    len(t.SplitIndices),
		"split_conditions": len(t.SplitConditions),
		"default_left":     len(t.DefaultLeft),
	} {
		if l != n {
			return fmt.Errorf("%s.%s: %d entries, num_nodes is %d", path, name, l, n)
		}
	}
	for i, st := range t.SplitType {
		if st != 0 {
			return fmt.Errorf("%s.split_type[%d]: categorical splits are not supported", path, i)
		}
	}
	if len(t.CategoriesNodes) > 0 || len(t.CategoriesValues) > 0 {
		return fmt.Errorf("%s.categories_nodes: categorical splits are not supported", path)
	}
	if len(b.e.nodes)+n > maxNodes {
		return fmt.Errorf("%s: model exceeds %d nodes", path, maxNodes)
	}

	if cap(b.seen) < n {
		b.seen = make([]bool, n)
	}
	seen := b.seen[:n]
	clear(seen)
	e := b.e
	root := int32(len(e.nodes))
	e.nodes = append(e.nodes, node{})
	seen[0] = true
	depth := 0
	q := b.queue[:0] // the scratch queue of the last tree, handed back below
	q = append(q, pending{src: 0, dst: root})
	for len(q) > 0 {
		p := q[0]
		q = q[1:]
		s := p.src
		l, r := t.LeftChildren[s], t.RightChildren[s]
		if l == -1 && r == -1 {
			e.nodes[p.dst] = node{cond: float32(math.Inf(1)), feat: uint32(e.numFeature), left: p.dst, mul: t.SplitConditions[s]}
			depth = max(depth, p.depth)
			continue
		}
		for _, c := range [2]int32{l, r} {
			if c <= 0 || int(c) >= n {
				return fmt.Errorf("%s: node %d: child %d out of range [1, %d)", path, s, c, n)
			}
			if seen[c] {
				return fmt.Errorf("%s: node %d: child %d is reached twice (not a tree)", path, s, c)
			}
			seen[c] = true
		}
		f := t.SplitIndices[s]
		if f < 0 || f >= int64(e.numFeature) {
			return fmt.Errorf("%s.split_indices[%d]: feature %d out of range [0, %d)", path, s, f, e.numFeature)
		}
		c := int32(len(e.nodes))
		e.nodes = append(e.nodes, node{}, node{})
		first, second := l, r
		nd := node{cond: t.SplitConditions[s], feat: uint32(f), left: c, mul: 1}
		if t.DefaultLeft[s] {
			first, second = r, l
			nd.cond, nd.mul = math.Nextafter32(-nd.cond, float32(math.Inf(1))), -1
		}
		e.nodes[p.dst] = nd
		q = append(q, pending{src: first, dst: c, depth: p.depth + 1}, pending{src: second, dst: c + 1, depth: p.depth + 1})
	}
	b.queue = q[:0]
	e.maxDepth = max(e.maxDepth, depth)
	e.depths = append(e.depths, int32(depth))
	e.roots = append(e.roots, root)
	e.groups = append(e.groups, int32(group))
	return nil
}
