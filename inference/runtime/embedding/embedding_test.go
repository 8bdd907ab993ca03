package embedding

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/inference/runtime"
)

// small has users 7 = (1, 0) and 9 = (0, 1) and items 10 = (1, 1),
// 20 = (2, 0), 30 = (0, 3), 40 = (1, 1).
const small = `{"format": "maestro-embedding/v1", "dim": 2,
 "user_ids": [7, 9], "item_ids": [10, 20, 30, 40],
 "users": [[1, 0], [0, 1]],
 "items": [[1, 1], [2, 0], [0, 3], [1, 1]]}`

func table(t testing.TB, doc string) *Table {
	t.Helper()
	tb, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func spec(width int64, withK bool) runtime.Signature {
	s := runtime.Signature{
		Inputs: []runtime.TensorSpec{{Name: "user_id", Datatype: runtime.Int64, Shape: []int64{-1, 1}}},
		Outputs: []runtime.TensorSpec{
			{Name: "item_ids", Datatype: runtime.Int64, Shape: []int64{-1, width}},
			{Name: "scores", Datatype: runtime.FP32, Shape: []int64{-1, width}},
		},
	}
	if withK {
		s.Inputs = append(s.Inputs, runtime.TensorSpec{Name: "k", Datatype: runtime.Int32, Shape: []int64{-1, 1}})
	}
	return s
}

func users(ids ...int64) runtime.Tensor {
	return runtime.Tensor{Name: "user_id", Datatype: runtime.Int64, Shape: []int64{int64(len(ids)), 1}, Data: ids}
}

func TestTopK(t *testing.T) {
	cases := []struct {
		name      string
		sig       runtime.Signature
		params    map[string]string
		inputs    []runtime.Tensor
		wantIDs   []int64
		wantScore []float32
		wantShape []int64
	}{
		{
			name:   "fixed k, ties to the lower row",
			sig:    spec(3, false),
			inputs: []runtime.Tensor{users(7, 9)},
			// user 7: 20 (2), 10 (1), 40 (1); user 9: 30 (3), 10 (1), 40 (1).
			wantIDs: []int64{20, 10, 40, 30, 10, 40}, wantScore: []float32{2, 1, 1, 3, 1, 1}, wantShape: []int64{2, 3},
		},
		{
			name:    "k input pads shorter rows",
			sig:     spec(-1, true),
			params:  map[string]string{"k": "2", "max_k": "3"},
			inputs:  []runtime.Tensor{users(7, 9), {Name: "k", Datatype: runtime.Int32, Shape: []int64{2, 1}, Data: []int32{1, 3}}},
			wantIDs: []int64{20, -1, -1, 30, 10, 40}, wantScore: []float32{2, 0, 0, 3, 1, 1}, wantShape: []int64{2, 3},
		},
		{
			name:    "k input capped by max_k",
			sig:     spec(-1, true),
			params:  map[string]string{"k": "1", "max_k": "2"},
			inputs:  []runtime.Tensor{users(9), {Name: "k", Datatype: runtime.Int32, Shape: []int64{1, 1}, Data: []int32{50}}},
			wantIDs: []int64{30, 10}, wantScore: []float32{3, 1}, wantShape: []int64{1, 2},
		},
		{
			name:    "k beyond the catalogue",
			sig:     spec(-1, false),
			params:  map[string]string{"k": "9"},
			inputs:  []runtime.Tensor{users(7)},
			wantIDs: []int64{20, 10, 40, 30}, wantScore: []float32{2, 1, 1, 0}, wantShape: []int64{1, 4},
		},
		{
			name:    "int32 user ids",
			sig:     spec(1, false),
			inputs:  []runtime.Tensor{{Name: "user_id", Datatype: runtime.Int32, Shape: []int64{1, 1}, Data: []int32{9}}},
			wantIDs: []int64{30}, wantScore: []float32{3}, wantShape: []int64{1, 1},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := New(table(t, small), c.sig, c.params)
			if err != nil {
				t.Fatal(err)
			}
			out, err := m.Predict(context.Background(), c.inputs)
			if err != nil {
				t.Fatal(err)
			}
			if got := out[0].Data.([]int64); !slices.Equal(got, c.wantIDs) {
				t.Errorf("ids %v, want %v", got, c.wantIDs)
			}
			if got := out[1].Data.([]float32); !slices.Equal(got, c.wantScore) {
				t.Errorf("scores %v, want %v", got, c.wantScore)
			}
			for _, o := range out {
				if !slices.Equal(o.Shape, c.wantShape) {
					t.Errorf("%s shape %v, want %v", o.Name, o.Shape, c.wantShape)
				}
			}
		})
	}
}

// TestAgainstFullSort checks the heap against sorting every score, on a
// random table with many ties (integer-valued vectors).
func TestAgainstFullSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const nu, ni, dim, k = 20, 300, 3, 25
	tb := &Table{Dim: dim}
	for i := range nu {
		tb.UserIDs = append(tb.UserIDs, int64(i))
	}
	for i := range ni {
		tb.ItemIDs = append(tb.ItemIDs, int64(1000+i))
	}
	for range nu * dim {
		tb.Users = append(tb.Users, float64(rng.IntN(5)-2))
	}
	for range ni * dim {
		tb.Items = append(tb.Items, float64(rng.IntN(5)-2))
	}
	m, err := New(tb, spec(k, false), nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, nu)
	for i := range ids {
		ids[i] = int64(i)
	}
	out, err := m.Predict(context.Background(), []runtime.Tensor{users(ids...)})
	if err != nil {
		t.Fatal(err)
	}
	got := out[0].Data.([]int64)
	for u := range nu {
		all := make([]scored, ni)
		for j := range ni {
			var s float64
			for d := range dim {
				s += tb.Users[u*dim+d] * tb.Items[j*dim+d]
			}
			all[j] = scored{score: s, row: int32(j)}
		}
		slices.SortStableFunc(all, func(a, b scored) int {
			switch {
			case a.score > b.score:
				return -1
			case a.score < b.score:
				return 1
			}
			return 0
		})
		for j := range k {
			if want := tb.ItemIDs[all[j].row]; got[u*k+j] != want {
				t.Fatalf("user %d rank %d: item %d, want %d", u, j, got[u*k+j], want)
			}
		}
	}
}

func TestPredictBadInput(t *testing.T) {
	m, err := New(table(t, small), spec(-1, true), map[string]string{"k": "2"})
	if err != nil {
		t.Fatal(err)
	}
	k1 := runtime.Tensor{Name: "k", Datatype: runtime.Int32, Shape: []int64{1, 1}, Data: []int32{1}}
	cases := []struct {
		name   string
		inputs []runtime.Tensor
		want   string
	}{
		{"unknown user", []runtime.Tensor{users(7, 8), {Name: "k", Datatype: runtime.Int32, Shape: []int64{2, 1}, Data: []int32{1, 1}}}, "row 1: unknown user id 8"},
		{"no user input", []runtime.Tensor{k1}, `missing input "user_id"`},
		{"no k input", []runtime.Tensor{users(7)}, `missing input "k"`},
		{"float user", []runtime.Tensor{{Name: "user_id", Datatype: runtime.FP32, Shape: []int64{1, 1}, Data: []float32{7}}, k1}, "want an integer type"},
		{"zero k", []runtime.Tensor{users(7), {Name: "k", Datatype: runtime.Int32, Shape: []int64{1, 1}, Data: []int32{0}}}, "k=0"},
		{"k rows", []runtime.Tensor{users(7, 9), k1}, "1 rows, input \"user_id\" has 2"},
		{"shape", []runtime.Tensor{{Name: "user_id", Datatype: runtime.Int64, Shape: []int64{3, 1}, Data: []int64{7}}, k1}, "wants 3 elements"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := m.Predict(context.Background(), c.inputs)
			if !errors.Is(err, runtime.ErrInvalidInput) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrInvalidInput containing %q", err, c.want)
			}
		})
	}
}

func TestBindErrors(t *testing.T) {
	floatIn := spec(2, false)
	floatIn.Inputs[0].Datatype = runtime.FP32
	twoIDs := spec(2, false)
	twoIDs.Outputs[1].Datatype = runtime.Int64
	mixed := spec(2, false)
	mixed.Outputs[1].Shape = []int64{-1, 3}
	wrongK := spec(-1, true)
	wrongK.Inputs[1].Name = "count"
	cases := []struct {
		name   string
		sig    runtime.Signature
		params map[string]string
		want   string
	}{
		{"k against width", spec(2, false), map[string]string{"k": "3"}, "parameter k: 3, but the outputs are 2 wide"},
		{"bad k", spec(-1, false), map[string]string{"k": "ten"}, `parameter k: "ten"`},
		{"max_k below k", spec(-1, false), map[string]string{"k": "3", "max_k": "2"}, "1 <= k <= max_k"},
		{"k input with fixed width", spec(2, true), nil, "needs outputs of variable width"},
		{"width beyond items", spec(5, false), nil, "5 items per row, the table has 4"},
		{"float user ids", floatIn, nil, "want an integer type"},
		{"two id outputs", twoIDs, nil, "second item id output"},
		{"mixed widths", mixed, nil, "disagrees"},
		{"unnamed k", wrongK, nil, `neither is the k input "k"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(table(t, small), c.sig, c.params)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"syntax", `{"format":`, "decode"},
		{"unknown field", `{"format": "maestro-embedding/v1", "dim": 1, "users": [[1]], "items": [[1]], "bias": 1}`, `unknown field "bias"`},
		{"format", `{"format": "x", "dim": 1, "users": [[1]], "items": [[1]]}`, "format"},
		{"dim", `{"format": "maestro-embedding/v1", "dim": 0, "users": [[1]], "items": [[1]]}`, "dim: 0"},
		{"no users", `{"format": "maestro-embedding/v1", "dim": 1, "items": [[1]]}`, "users: 0 vectors"},
		{"short vector", `{"format": "maestro-embedding/v1", "dim": 2, "users": [[1, 2]], "items": [[1, 2], [1]]}`, "items[1]: 1 values, dim is 2"},
		{"id count", `{"format": "maestro-embedding/v1", "dim": 1, "user_ids": [1, 2], "users": [[1]], "items": [[1]]}`, "user_ids: 2 ids for 1 users"},
		{"duplicate id", `{"format": "maestro-embedding/v1", "dim": 1, "item_ids": [4, 4], "users": [[1]], "items": [[1], [2]]}`, "item_ids[1]: id 4 already at index 0"},
		{"trailing", `{"format": "maestro-embedding/v1", "dim": 1, "users": [[1]], "items": [[1]]} x`, "data after"},
		{"float32 overflow", `{"format": "maestro-embedding/v1", "dim": 1, "users": [[1]], "items": [[1e39]]}`, "items[0][0]: 1e+39 overflows float32"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestLoadDefaultIDs(t *testing.T) {
	dir := t.TempDir()
	doc := `{"format": "maestro-embedding/v1", "dim": 1, "users": [[1], [-1]], "items": [[1], [2], [3]]}`
	if err := os.WriteFile(filepath.Join(dir, DefaultFile), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(context.Background(), runtime.Spec{Dir: dir, Signature: spec(2, false)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Predict(context.Background(), []runtime.Tensor{users(1)})
	if err != nil {
		t.Fatal(err)
	}
	if got := out[0].Data.([]int64); !slices.Equal(got, []int64{0, 1}) {
		t.Errorf("user 1 (vector -1) got items %v, want [0 1]", got)
	}
	if m.MemoryBytes() < 5*8 {
		t.Errorf("MemoryBytes %d below the vectors' size", m.MemoryBytes())
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(small))
	f.Add([]byte(`{"format": "maestro-embedding/v1", "dim": 1, "users": [[1]], "items": [[1]]}`))
	f.Add([]byte(`{"format": "maestro-embedding/v1", "dim": 4096, "users": [[]], "items": [[1e308, -1e308]]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tb, err := Parse(data)
		if err != nil {
			return
		}
		m, err := New(tb, spec(-1, true), map[string]string{"k": "3"})
		if err != nil {
			t.Fatalf("parsed table did not bind: %v", err)
		}
		in := []runtime.Tensor{users(tb.UserIDs[0]), {Name: "k", Datatype: runtime.Int32, Shape: []int64{1, 1}, Data: []int32{2}}}
		if _, err := m.Predict(context.Background(), in); err != nil {
			t.Fatalf("predict for a known user: %v", err)
		}
	})
}
