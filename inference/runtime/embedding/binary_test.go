package embedding

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/runtime/fixture"
)

// TestBinaryRoundTrip converts the demo table to the binary format and
// checks the binary model replays the demo fixture exactly as the JSON one.
func TestBinaryRoundTrip(t *testing.T) {
	models := filepath.Join("..", "..", "..", "examples", "models")
	tb, err := Parse(mustRead(t, filepath.Join(models, "recommendations", "1", DefaultFile)))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := tb.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseBinary(bin)
	if err != nil {
		t.Fatal(err)
	}
	// The JSON vectors are float32 values, so the round trip is exact.
	if back.Dim != tb.Dim || !slices.Equal(back.UserIDs, tb.UserIDs) || !slices.Equal(back.ItemIDs, tb.ItemIDs) ||
		!slices.Equal(back.Users, tb.Users) || !slices.Equal(back.Items, tb.Items) {
		t.Fatal("binary round trip changed the table")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "e.bin"), bin, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(context.Background(), runtime.Spec{Dir: dir, Signature: spec(10, false), Params: map[string]string{"model_file": "e.bin"}})
	if err != nil {
		t.Fatal(err)
	}
	fx, err := fixture.Load(filepath.Join(models, "fixtures", "recommendations-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Predict(context.Background(), fx.Inputs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if err := fixture.Compare(fx.Outputs[i], got[i], fx.Tolerance); err != nil {
			t.Error(err)
		}
	}
	if len(bin)*3 > len(mustRead(t, filepath.Join(models, "recommendations", "1", DefaultFile))) {
		t.Errorf("binary artifact is %d bytes, not much smaller than the JSON", len(bin))
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseBinaryErrors(t *testing.T) {
	good, err := table(t, small).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(b []byte) []byte) []byte { return f(slices.Clone(good)) }
	put32 := func(off int, v uint32) []byte {
		return edit(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b })
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "header"},
		{"magic", edit(func(b []byte) []byte { b[0] = 'X'; return b }), "header"},
		{"version", put32(4, 2), "version 2"},
		{"dim", put32(8, 0), "dim 0"},
		{"users", put32(12, 0), "0 users"},
		{"huge items", put32(16, math.MaxUint32), "items"},
		{"truncated", good[:len(good)-1], "length"},
		{"trailing", append(slices.Clone(good), 0), "length"},
		{"nan", edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[len(b)-4:], math.Float32bits(float32(math.NaN())))
			return b
		}), "items[3][1]: NaN is not finite"},
		{"duplicate", edit(func(b []byte) []byte { copy(b[headerLen+8:], b[headerLen:headerLen+8]); return b }), "user_ids[1]: id 7 already"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseBinary(c.data)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func FuzzParseBinary(f *testing.F) {
	good, err := table(f, small).MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:headerLen])
	f.Fuzz(func(t *testing.T, data []byte) {
		tb, err := ParseBinary(data)
		if err != nil {
			return
		}
		again, err := tb.MarshalBinary()
		if err != nil || !slices.Equal(again, data) {
			t.Fatalf("a parsed table did not encode back to its bytes: %v", err)
		}
	})
}
