package model

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestStrArenaKeepsEveryString(t *testing.T) {
	var a strArena
	var got, want []string
	// Enough to fill several chunks, with one part larger than a chunk.
	for i := 0; i < 20000; i++ {
		parts := []string{"svc", fmt.Sprint(i), ".", "v1"}
		if i == 777 {
			parts = append(parts, strings.Repeat("x", 2*strChunk))
		}
		got = append(got, a.concat(parts...))
		want = append(want, strings.Join(parts, ""))
	}
	if !slices.Equal(got, want) {
		t.Fatal("a string changed after later ones were added")
	}
}

func TestStrArenaReturnsALonePart(t *testing.T) {
	var a strArena
	tests := map[string]struct {
		parts []string
		want  string
	}{
		"none":           {nil, ""},
		"all empty":      {[]string{"", ""}, ""},
		"one":            {[]string{"route"}, "route"},
		"one among many": {[]string{"", "route", ""}, "route"},
		"two":            {[]string{"route", ".rest"}, "route.rest"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := a.concat(tc.parts...); got != tc.want {
				t.Errorf("concat(%q) = %q, want %q", tc.parts, got, tc.want)
			}
		})
	}
}

func TestSlabSlicesAreIndependent(t *testing.T) {
	var s slab[int]
	x := s.take(2)
	y := s.take(3)
	x[0], x[1] = 1, 2
	y[0], y[1], y[2] = 3, 4, 5
	// Appending to x must not overwrite y, which follows it in the chunk.
	x = append(x, 99)
	if !slices.Equal(y, []int{3, 4, 5}) || !slices.Equal(x, []int{1, 2, 99}) {
		t.Fatalf("x = %v, y = %v", x, y)
	}
	if z := s.take(0); z == nil || len(z) != 0 {
		t.Errorf("take(0) = %#v, want an empty non-nil slice like make", z)
	}
	if big := s.take(3 * slabChunk); len(big) != 3*slabChunk {
		t.Errorf("take larger than a chunk: len %d", len(big))
	}
	if c := s.clone(nil); c != nil {
		t.Errorf("clone(nil) = %#v, want nil", c)
	}
	if c := s.clone([]int{}); c == nil || len(c) != 0 {
		t.Errorf("clone(empty) = %#v, want empty non-nil", c)
	}
	src := []int{7, 8}
	c := s.clone(src)
	c[0] = 0
	if src[0] != 7 {
		t.Error("clone shares memory with its source")
	}
}

func TestSortedIndexFind(t *testing.T) {
	name := func(s *string) string { return *s }
	sorted := []string{"a", "b", "c", "d", "e", "f", "g"}
	unsorted := []string{"g", "c", "a", "f", "b", "e", "d"}
	tests := map[string]struct {
		items   []string
		lookups []string
	}{
		// In order, backwards, jumping: each must find the same index a
		// linear search does, whatever the last hit was.
		"sorted in order":   {sorted, []string{"a", "b", "c", "c", "d", "e", "f", "g"}},
		"sorted backwards":  {sorted, []string{"g", "f", "e", "d", "c", "b", "a"}},
		"sorted jumping":    {sorted, []string{"d", "a", "g", "b", "zz", "", "e", "c", "0"}},
		"unsorted":          {unsorted, []string{"g", "c", "a", "f", "b", "e", "d", "x", "a", "g"}},
		"unsorted in order": {unsorted, sorted},
		"empty":             {nil, []string{"a", ""}},
	}
	for tn, tc := range tests {
		t.Run(tn, func(t *testing.T) {
			x := newSortedIndex(tc.items, name)
			for _, n := range tc.lookups {
				if got, want := x.find(n), slices.Index(tc.items, n); got != want {
					t.Errorf("find(%q) = %d, want %d", n, got, want)
				}
			}
		})
	}
}

func TestUniqueInOrder(t *testing.T) {
	vh := func(names ...string) VirtualHost {
		var rs []Route
		for _, n := range names {
			rs = append(rs, Route{Name: n})
		}
		return VirtualHost{Routes: rs}
	}
	tests := map[string]struct {
		vhs  []VirtualHost
		want bool
	}{
		"none":                {nil, true},
		"increasing":          {[]VirtualHost{vh("a", "a.rest", "b")}, true},
		"across hosts":        {[]VirtualHost{vh("a", "b"), vh("c")}, true},
		"repeat across hosts": {[]VirtualHost{vh("a", "b"), vh("b")}, false},
		"repeat":              {[]VirtualHost{vh("a", "a")}, false},
		"decreasing":          {[]VirtualHost{vh("b", "a")}, false},
		"empty name":          {[]VirtualHost{vh("")}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := uniqueInOrder(tc.vhs); got != tc.want {
				t.Errorf("uniqueInOrder = %v, want %v", got, tc.want)
			}
		})
	}
}
