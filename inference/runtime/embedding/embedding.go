// Package embedding serves a top-k recommender from user and item
// embedding matrices: a user's score for an item is the dot product of
// their vectors, and the answer is the k best items, best first.
//
// The artifact (default "embeddings.json") is:
//
//	{
//	  "format": "maestro-embedding/v1",
//	  "dim": 16,
//	  "user_ids": [100000, 100001, ...],
//	  "item_ids": [5000, 5003, ...],
//	  "users": [[0.12, ...], ...],
//	  "items": [[-0.4, ...], ...]
//	}
//
// users and items hold one vector of dim float32 values per id (values are
// rounded to float32 on load); user_ids and
// item_ids are optional (row numbers 0..n-1 when absent) and must be
// unique. Scores are summed in float64; ties go to the lower item row. A
// model_file ending in ".bin" is read in the compact binary format instead
// (see Table.MarshalBinary).
//
// # Binding to config.yaml
//
// Inputs: the user ids (any integer type, one per row) and, optionally, an
// INT32 input named by parameter "k_input" (default "k") with one requested
// k per row. Outputs: an INT64 or INT32 output receives item ids, an FP32
// or FP64 output the scores, both k per row.
//
// Parameters: "k" is the default number of items (when the outputs declare
// a fixed width it must equal that width, and is taken from it when
// absent); "max_k" caps a requested k (default: k). When a k input is
// declared, the outputs' width must be variable (-1) and a batch is as wide
// as its largest k; shorter rows are padded with item id -1 and score 0.
// An unknown user id is an input error. "model_file" names the artifact.
package embedding

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/maestro-ml/maestro/inference/runtime"
)

// Format is the value of the file's "format" field.
const Format = "maestro-embedding/v1"

// DefaultFile is the artifact name in a version directory.
const DefaultFile = "embeddings.json"

const (
	maxDim  = 1 << 12
	maxRows = 1 << 24
)

type fileJSON struct {
	Format  string      `json:"format"`
	Dim     int         `json:"dim"`
	UserIDs []int64     `json:"user_ids"`
	ItemIDs []int64     `json:"item_ids"`
	Users   [][]float64 `json:"users"`
	Items   [][]float64 `json:"items"`
}

// Table is a parsed, validated pair of embedding matrices.
type Table struct {
	Dim     int
	UserIDs []int64
	ItemIDs []int64
	Users   []float64 // row-major, len(UserIDs)*Dim
	Items   []float64 // row-major, len(ItemIDs)*Dim
}

// Parse decodes and validates an embeddings file.
func Parse(data []byte) (*Table, error) {
	var f fileJSON
	if err := runtime.DecodeJSON(data, &f); err != nil {
		return nil, err
	}
	if f.Format != Format {
		return nil, fmt.Errorf("format: %q, want %q", f.Format, Format)
	}
	if f.Dim < 1 || f.Dim > maxDim {
		return nil, fmt.Errorf("dim: %d out of range [1, %d]", f.Dim, maxDim)
	}
	t := &Table{Dim: f.Dim}
	var err error
	if t.UserIDs, t.Users, err = matrix("users", f.Users, f.UserIDs, f.Dim); err != nil {
		return nil, err
	}
	if t.ItemIDs, t.Items, err = matrix("items", f.Items, f.ItemIDs, f.Dim); err != nil {
		return nil, err
	}
	return t, nil
}

func matrix(field string, rows [][]float64, ids []int64, dim int) ([]int64, []float64, error) {
	if len(rows) == 0 || len(rows) > maxRows {
		return nil, nil, fmt.Errorf("%s: %d vectors, want 1 to %d", field, len(rows), maxRows)
	}
	idField := field[:len(field)-1] + "_ids"
	if ids == nil {
		ids = make([]int64, len(rows))
		for i := range ids {
			ids[i] = int64(i)
		}
	}
	if len(ids) != len(rows) {
		return nil, nil, fmt.Errorf("%s: %d ids for %d %s", idField, len(ids), len(rows), field)
	}
	seen := make(map[int64]int, len(ids))
	for i, id := range ids {
		if j, dup := seen[id]; dup {
			return nil, nil, fmt.Errorf("%s[%d]: id %d already at index %d", idField, i, id, j)
		}
		seen[id] = i
	}
	flat := make([]float64, 0, len(rows)*dim)
	for i, r := range rows {
		if len(r) != dim {
			return nil, nil, fmt.Errorf("%s[%d]: %d values, dim is %d", field, i, len(r), dim)
		}
		for j, v := range r {
			// Vectors are float32, whatever digits the file spells them with.
			f := float32(v)
			if math.IsInf(float64(f), 0) {
				return nil, nil, fmt.Errorf("%s[%d][%d]: %g overflows float32", field, i, j, v)
			}
			flat = append(flat, float64(f))
		}
	}
	return ids, flat, nil
}

// Load reads spec.Dir/embeddings.json (or the "model_file" parameter) and
// binds it to spec's signature. It is a runtime.Loader.
func Load(ctx context.Context, spec runtime.Spec) (runtime.Model, error) {
	path, data, err := runtime.ReadArtifact(ctx, spec, DefaultFile, "embeddings")
	if err != nil {
		return nil, err
	}
	parse := Parse
	if strings.HasSuffix(path, ".bin") {
		parse = ParseBinary
	}
	t, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: parse embeddings: %w", path, err)
	}
	m, err := New(t, spec.Signature, spec.Params)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Model is a top-k recommender bound to a signature, safe for concurrent
// use.
type Model struct {
	t        *Table
	userRow  map[int64]int32
	user     runtime.TensorSpec
	kInput   string // "" when no k input is declared
	k, maxK  int
	idsOut   *runtime.TensorSpec
	scoreOut *runtime.TensorSpec
	outputs  []runtime.TensorSpec
}

// New binds a table to sig with the runtime parameters params.
func New(t *Table, sig runtime.Signature, params map[string]string) (*Model, error) {
	m := &Model{t: t, userRow: make(map[int64]int32, len(t.UserIDs))}
	for i, id := range t.UserIDs {
		m.userRow[id] = int32(i)
	}
	kName := "k"
	if v := params["k_input"]; v != "" {
		kName = v
	}
	switch len(sig.Inputs) {
	case 1:
		m.user = sig.Inputs[0]
	case 2:
		ui := 0
		if sig.Inputs[0].Name == kName {
			ui = 1
		}
		m.user, m.kInput = sig.Inputs[ui], sig.Inputs[1-ui].Name
		if m.kInput != kName {
			return nil, fmt.Errorf("config inputs: two declared, but neither is the k input %q", kName)
		}
		k := sig.Inputs[1-ui]
		if k.Datatype != runtime.Int32 && k.Datatype != runtime.Int64 {
			return nil, fmt.Errorf("config input %q: datatype %s, want INT32", k.Name, k.Datatype)
		}
		if w, err := k.RowWidth(); err != nil || w != 1 {
			return nil, fmt.Errorf("config input %q: want one k per row", k.Name)
		}
	default:
		return nil, fmt.Errorf("config inputs: %d declared, want the user ids and optionally %q", len(sig.Inputs), kName)
	}
	if w, err := m.user.RowWidth(); err != nil || w != 1 {
		return nil, fmt.Errorf("config input %q: want one user id per row", m.user.Name)
	}
	switch m.user.Datatype {
	case runtime.Int64, runtime.Int32, runtime.Int16, runtime.Int8, runtime.Uint64, runtime.Uint32, runtime.Uint16, runtime.Uint8:
	default:
		return nil, fmt.Errorf("config input %q: datatype %s, want an integer type", m.user.Name, m.user.Datatype)
	}

	width := 0 // the outputs' fixed width; -1 when variable
	for i := range sig.Outputs {
		o := &sig.Outputs[i]
		w, err := o.RowWidth()
		if err != nil {
			w = -1
			if dims := o.Shape; len(dims) != 2 || !o.Batched() || dims[1] != -1 {
				return nil, fmt.Errorf("config output %q: shape %v, want [k] or [-1] after the batch dimension", o.Name, o.Shape)
			}
		}
		if width != 0 && w != width {
			return nil, fmt.Errorf("config output %q: width %d disagrees with the other output's %d", o.Name, w, width)
		}
		width = w
		switch o.Datatype {
		case runtime.Int64, runtime.Int32:
			if m.idsOut != nil {
				return nil, fmt.Errorf("config output %q: a second item id output", o.Name)
			}
			m.idsOut = o
		case runtime.FP32, runtime.FP64:
			if m.scoreOut != nil {
				return nil, fmt.Errorf("config output %q: a second score output", o.Name)
			}
			m.scoreOut = o
		default:
			return nil, fmt.Errorf("config output %q: datatype %s, want INT64 (item ids) or FP32 (scores)", o.Name, o.Datatype)
		}
		m.outputs = append(m.outputs, *o)
	}
	if len(m.outputs) == 0 {
		return nil, errors.New("config outputs: none declared")
	}

	k, err := intParam(params, "k", width)
	if err != nil {
		return nil, err
	}
	if k == 0 {
		k = 10
	}
	if width > 0 && k != width {
		return nil, fmt.Errorf("parameter k: %d, but the outputs are %d wide", k, width)
	}
	if m.kInput != "" && width > 0 {
		return nil, fmt.Errorf("config input %q: a per-request k needs outputs of variable width (-1), not %d", m.kInput, width)
	}
	maxK, err := intParam(params, "max_k", k)
	if err != nil {
		return nil, err
	}
	if k < 1 || maxK < k {
		return nil, fmt.Errorf("parameters: k %d and max_k %d, want 1 <= k <= max_k", k, maxK)
	}
	if width > 0 && width > len(t.ItemIDs) {
		return nil, fmt.Errorf("config outputs: %d items per row, the table has %d items", width, len(t.ItemIDs))
	}
	m.k, m.maxK = k, maxK
	return m, nil
}

func intParam(params map[string]string, name string, def int) (int, error) {
	s, ok := params[name]
	if !ok {
		return max(def, 0), nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("parameter %s: %q, want a positive integer", name, s)
	}
	return v, nil
}

// scored is one candidate item: its row in the table and its score.
type scored struct {
	score float64
	row   int32
}

// better orders candidates best first: higher score, then lower row.
func better(a, b scored) bool {
	return a.score > b.score || (a.score == b.score && a.row < b.row)
}

// Predict returns the top-k items for each user id in the batch.
func (m *Model) Predict(ctx context.Context, inputs []runtime.Tensor) ([]runtime.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ut, err := runtime.Find(inputs, m.user.Name)
	if err != nil {
		return nil, err
	}
	users, err := runtime.Int64s(ut)
	if err != nil {
		return nil, err
	}
	rows, err := runtime.Rows(ut, 1, len(users))
	if err != nil {
		return nil, err
	}
	if !m.user.Batched() && rows != 1 {
		return nil, fmt.Errorf("%w: input %q: %d rows for a model without a batch dimension", runtime.ErrInvalidInput, ut.Name, rows)
	}
	nItems := len(m.t.ItemIDs)
	ks := make([]int, rows)
	width := min(m.k, nItems)
	for r := range ks {
		ks[r] = width
	}
	if m.kInput != "" {
		kt, err := runtime.Find(inputs, m.kInput)
		if err != nil {
			return nil, err
		}
		req, err := runtime.Int64s(kt)
		if err != nil {
			return nil, err
		}
		if kr, err := runtime.Rows(kt, 1, len(req)); err != nil {
			return nil, err
		} else if kr != rows {
			return nil, fmt.Errorf("%w: input %q: %d rows, input %q has %d", runtime.ErrInvalidInput, kt.Name, kr, ut.Name, rows)
		}
		width = 0
		for r, k := range req {
			if k < 1 {
				return nil, fmt.Errorf("%w: input %q: row %d asks for k=%d, want at least 1", runtime.ErrInvalidInput, kt.Name, r, k)
			}
			ks[r] = int(min(k, int64(m.maxK), int64(nItems)))
			width = max(width, ks[r])
		}
	}
	rowsIdx := make([]int32, rows)
	for r, id := range users {
		i, ok := m.userRow[id]
		if !ok {
			return nil, fmt.Errorf("%w: input %q: row %d: unknown user id %d", runtime.ErrInvalidInput, ut.Name, r, id)
		}
		rowsIdx[r] = i
	}

	ids := make([]int64, rows*width)
	scores := make([]float64, rows*width)
	top := make([]scored, 0, width)
	for r, ur := range rowsIdx {
		if r%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		top = m.topK(ur, ks[r], top[:0])
		for j := range width {
			if j < len(top) {
				ids[r*width+j] = m.t.ItemIDs[top[j].row]
				scores[r*width+j] = top[j].score
			} else {
				ids[r*width+j] = -1
			}
		}
	}
	out := make([]runtime.Tensor, len(m.outputs))
	for i, o := range m.outputs {
		t := runtime.Tensor{Name: o.Name, Datatype: o.Datatype, Shape: runtime.OutputShape(o, rows, width)}
		switch o.Datatype {
		case runtime.Int64:
			t.Data = ids
		case runtime.Int32:
			d := make([]int32, len(ids))
			for j, v := range ids {
				if v > math.MaxInt32 || v < math.MinInt32 {
					return nil, fmt.Errorf("item id %d does not fit output %q (INT32)", v, o.Name)
				}
				d[j] = int32(v)
			}
			t.Data = d
		case runtime.FP64:
			t.Data = scores
		default:
			d := make([]float32, len(scores))
			for j, v := range scores {
				d[j] = float32(v)
			}
			t.Data = d
		}
		out[i] = t
	}
	return out, nil
}

// topK scores every item for user row ur and returns the best k, best
// first, appended to top. It keeps a min-heap of the k best so far (the
// worst at top[0]), so a batch costs items*log(k) comparisons per user.
func (m *Model) topK(ur int32, k int, top []scored) []scored {
	dim := m.t.Dim
	u := m.t.Users[int(ur)*dim : int(ur+1)*dim]
	items := m.t.Items
	for j := range len(m.t.ItemIDs) {
		c := scored{score: dot(u, items[j*dim:(j+1)*dim]), row: int32(j)}
		if len(top) < k {
			top = append(top, c)
			siftUp(top, len(top)-1)
			continue
		}
		if better(c, top[0]) {
			top[0] = c
			siftDown(top, 0)
		}
	}
	slices.SortFunc(top, func(a, b scored) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return cmp.Compare(a.row, b.row)
	})
	return top
}

// dot is the dot product of u and v (same length), with four partial sums
// so the additions do not wait on each other.
func dot(u, v []float64) float64 {
	v = v[:len(u)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(u); i += 4 {
		s0 += u[i] * v[i]
		s1 += u[i+1] * v[i+1]
		s2 += u[i+2] * v[i+2]
		s3 += u[i+3] * v[i+3]
	}
	for ; i < len(u); i++ {
		s0 += u[i] * v[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// The heap keeps the worst candidate at index 0: a parent is never better
// than its children.
func siftUp(h []scored, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !better(h[p], h[i]) {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func siftDown(h []scored, i int) {
	n := len(h)
	for {
		worst, l, r := i, 2*i+1, 2*i+2
		if l < n && better(h[worst], h[l]) {
			worst = l
		}
		if r < n && better(h[worst], h[r]) {
			worst = r
		}
		if worst == i {
			return
		}
		h[i], h[worst] = h[worst], h[i]
		i = worst
	}
}

// MemoryBytes estimates the memory the matrices and the id index hold.
func (m *Model) MemoryBytes() int64 {
	t := m.t
	return int64(len(t.Users)+len(t.Items))*8 + int64(len(t.UserIDs)+len(t.ItemIDs))*8 + int64(len(m.userRow))*24 + 512
}
