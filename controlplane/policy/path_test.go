package policy

import "testing"

func TestFieldPathString(t *testing.T) {
	for want, p := range map[string]fieldPath{
		"spec.split":                         pathOf("spec.split"),
		"spec.split[3]":                      elem("spec.split", 3),
		"spec.rules[0].split[12]":            elem("spec.rules", 0).dot("split").at(12),
		"spec.versions[1].endpoints[0].port": elem("spec.versions", 1).dot("endpoints").at(0).dot("port"),
		"spec.rules[2].to.routes[5]":         elem("spec.rules", 2).dot("to.routes").at(5),
	} {
		if got := p.String(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestSameRef(t *testing.T) {
	for _, tc := range []struct {
		a, b Destination
		want bool
	}{
		{Destination{Service: "s", Version: "v1"}, Destination{Service: "s", Version: "v1", Weight: 5}, true},
		{Destination{Service: "s", Version: "v1"}, Destination{Service: "s", Version: "v2"}, false},
		{Destination{Service: "s", Version: "v1"}, Destination{Service: "t", Version: "v1"}, false},
		// The message names destinations as service/version, so these are one.
		{Destination{Service: "a/b", Version: "c"}, Destination{Service: "a", Version: "b/c"}, true},
		{Destination{Service: "a/b", Version: "c"}, Destination{Service: "a", Version: "b/d"}, false},
	} {
		if got := sameRef(tc.a, tc.b); got != tc.want {
			t.Errorf("sameRef(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestSplitDuplicates: short splits (compared pairwise) and long ones
// (indexed in a map) report a repeated destination the same way.
func TestSplitDuplicates(t *testing.T) {
	for _, n := range []int{4, scanUpTo + 10} {
		split := make([]Destination, n)
		for i := range split {
			split[i] = Destination{Service: "s", Version: "v" + string(rune('a'+i%26)) + string(rune('a'+i/26))}
		}
		split[n-1] = split[1]
		e := &errs{}
		v := &validator{m: &Mesh{}, e: e, kind: KindRoute, d: &doc{}}
		v.split(pathOf("spec.split"), split)
		var found bool
		for _, x := range e.list {
			if x.Field == elem("spec.split", n-1).String() {
				found = true
				if want := "s version " + split[1].Version + " is also spec.split[1]"; x.Message != want {
					t.Errorf("n=%d: got %q, want %q", n, x.Message, want)
				}
			}
		}
		if !found {
			t.Errorf("n=%d: no duplicate reported in %v", n, e.list)
		}
	}
}
