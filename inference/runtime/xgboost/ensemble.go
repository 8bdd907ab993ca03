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

// missRight marks, in node.feat, a split that sends missing values (NaN)
// to the right child; XGBoost's default_left is the opposite flag.
const missRight = 1 << 31

// node is one flattened tree node. All trees live in one slice with each
// node's children adjacent (right = left+1), so a node is 12 bytes and a
// walk down a tree touches one small contiguous region: an array of these
// small structs keeps threshold, feature and child in the same cache line,
// which a walk needs together, where separate arrays would cost three.
type node struct {
	cond float32 // split threshold (go left when x < cond); the value at a leaf
	feat uint32  // feature index, with missRight
	left int32   // index of the left child; 0 at a leaf (no node points at a root)
}

// ensemble is a parsed, validated gbtree model ready to evaluate.
type ensemble struct {
	nodes      []node
	roots      []int32 // per tree: index of its root in nodes
	groups     []int32 // per tree: output group (class) it adds to
	numFeature int
	numGroup   int
	baseMargin []float32 // per group: base_score in margin space
	transform  transform
	objective  string
	version    []int
	maxDepth   int
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
	return int64(len(e.nodes))*12 + int64(len(e.roots)+len(e.groups)+len(e.baseMargin))*4 + 256
}

// blockRows is how many rows walk one tree before moving to the next, so a
// tree stays in cache across rows, as XGBoost's own CPU predictor does.
const blockRows = 64

// margins adds every tree's leaf for each of rows rows of x (numFeature
// values each) to out (numGroup values per row), which it first sets to the
// base margin. Sums are float32, tree by tree in model order, as XGBoost
// accumulates them.
func (e *ensemble) margins(x []float32, rows int, out []float32) {
	nf, ng := e.numFeature, e.numGroup
	for r := 0; r < rows; r++ {
		copy(out[r*ng:(r+1)*ng], e.baseMargin)
	}
	for start := 0; start < rows; start += blockRows {
		end := min(start+blockRows, rows)
		for t, root := range e.roots {
			g := int(e.groups[t])
			for r := start; r < end; r++ {
				row := x[r*nf : (r+1)*nf : (r+1)*nf]
				out[r*ng+g] += e.leaf(root, row)
			}
		}
	}
}

// leaf walks one tree from root for row and returns the leaf's value.
// Children always come after their parent, so the walk ends.
func (e *ensemble) leaf(i int32, row []float32) float32 {
	nodes := e.nodes
	for {
		n := &nodes[i]
		if n.left == 0 {
			return n.cond
		}
		v := row[n.feat&^missRight]
		next := n.left
		switch {
		case v != v: // NaN: missing
			next += int32(n.feat >> 31)
		case !(v < n.cond):
			next++
		}
		i = next
	}
}

// predict evaluates rows rows of x into out (outWidth values per row),
// using margin (numGroup values per row) as scratch.
func (e *ensemble) predict(x []float32, rows int, margin, out []float32) {
	e.margins(x, rows, margin)
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
	}}
}

func (b *builder) build() *ensemble { return b.e }

// add validates one tree and appends it breadth first, so siblings are
// adjacent and every child follows its parent. Unreachable (deleted)
// nodes are dropped.
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
	q := append(b.queue[:0], pending{src: 0, dst: root})
	for len(q) > 0 {
		p := q[0]
		q = q[1:]
		s := p.src
		l, r := t.LeftChildren[s], t.RightChildren[s]
		if l == -1 && r == -1 {
			e.nodes[p.dst] = node{cond: t.SplitConditions[s]}
			e.maxDepth = max(e.maxDepth, p.depth)
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
		feat := uint32(f)
		if !t.DefaultLeft[s] {
			feat |= missRight
		}
		c := int32(len(e.nodes))
		e.nodes = append(e.nodes, node{}, node{})
		e.nodes[p.dst] = node{cond: t.SplitConditions[s], feat: feat, left: c}
		q = append(q, pending{src: l, dst: c, depth: p.depth + 1}, pending{src: r, dst: c + 1, depth: p.depth + 1})
	}
	b.queue = q[:0]
	e.roots = append(e.roots, root)
	e.groups = append(e.groups, int32(group))
	return nil
}
