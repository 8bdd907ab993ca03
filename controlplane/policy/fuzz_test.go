package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes the parser panic and that every
// failure is an ErrorList whose items say where and what.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("../../examples/policies/*.yaml")
	seeds = append(seeds, "../../examples/mesh.yaml", "testdata/eps.yaml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(base))
	for _, c := range errCases[:20] {
		f.Add([]byte(base + c.extra))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse("fuzz.yaml", data)
		// A Loader that already holds the documents answers the same.
		l := &Loader{}
		_, _ = l.Parse("fuzz.yaml", data)
		m2, err2 := l.Parse("fuzz.yaml", data)
		if fmt.Sprint(err) != fmt.Sprint(err2) || !reflect.DeepEqual(m, m2) {
			t.Fatalf("cached parse differs: %v / %v", err, err2)
		}
		if err == nil {
			if m == nil || m.Config == nil {
				t.Fatal("nil mesh without error")
			}
			return
		}
		var list ErrorList
		if !errors.As(err, &list) || len(list) == 0 {
			t.Fatalf("error is not a non-empty ErrorList: %v", err)
		}
		for _, e := range list {
			if e.File == "" || e.Message == "" {
				t.Fatalf("error without file or message: %#v", e)
			}
		}
	})
}

// bomb is a document whose aliases expand to millions of values.
func bomb() []byte {
	var b strings.Builder
	b.WriteString(base + "---\napiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata: {name: bomb}\nspec:\n  service: fraud\n  split: &s [")
	for i := 0; i < 2000; i++ {
		b.WriteString("{version: v1, weight: 0}, ")
	}
	b.WriteString("]\n  rules: [")
	for i := 0; i < 2000; i++ {
		b.WriteString("{name: r, split: *s}, ")
	}
	b.WriteString("]\n")
	return []byte(b.String())
}

// TestAliasBomb: aliases make a small document expand multiplicatively;
// decoding must stop with an error instead of using time and memory.
func TestAliasBomb(t *testing.T) {
	_, err := Parse("bomb.yaml", bomb())
	if err == nil || !strings.Contains(err.Error(), "document too large") {
		t.Fatalf("got %.300v, want a too-large error", err)
	}
}
