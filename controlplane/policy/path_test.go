package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

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
		m := &Mesh{}
		v := &validator{m: m, e: e, kind: KindRoute, d: &doc{}, services: &serviceCursor{m: m}}
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

// TestRouteListSortedAndNot: a sorted route list (walked beside the routes)
// and an unsorted one (checked with a map) report the same problems.
func TestRouteListSortedAndNot(t *testing.T) {
	for name, tc := range map[string]struct {
		routes string
		want   []string
	}{
		"sorted": {"[a, fraud, fraud, zz]", []string{
			`spec.routes[0]: unknown Route "a"`, `spec.routes[2]: Route "fraud" listed twice`, `spec.routes[3]: unknown Route "zz"`}},
		"unsorted": {"[zz, fraud, a, fraud]", []string{
			`spec.routes[0]: unknown Route "zz"`, `spec.routes[2]: unknown Route "a"`, `spec.routes[3]: Route "fraud" listed twice`}},
	} {
		_, err := Parse("p.yaml", []byte(base+d(KindGateway, "edge", "{port: 8080, routes: "+tc.routes+"}")))
		var list ErrorList
		if !errors.As(err, &list) {
			t.Fatalf("%s: got %v, want an ErrorList", name, err)
		}
		var got []string
		for _, e := range list {
			got = append(got, e.Field+": "+e.Message)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %q, want %q", name, got, tc.want)
		}
	}
}

// TestIndexAfterChanges: a Loader's Meshes find their own documents by
// name whether the names changed since the last load or not.
func TestIndexAfterChanges(t *testing.T) {
	l := &Loader{}
	edited := strings.Replace(base, "weight: 90}, {version: v2, weight: 10}", "weight: 80}, {version: v2, weight: 20}", 1)
	grown := base + svc("extra", "{"+v1+"}")
	for i, text := range []string{base, edited, grown, base} {
		m, err := l.Parse("p.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range m.Services {
			if m.Service(s.Metadata.Name) != s {
				t.Errorf("step %d: Service(%q) is not the Mesh's own", i, s.Metadata.Name)
			}
		}
		for _, r := range m.Routes {
			if m.Route(r.Metadata.Name) != r {
				t.Errorf("step %d: Route(%q) is not the Mesh's own", i, r.Metadata.Name)
			}
		}
		if got := m.Service("extra") != nil; got != (i == 2) {
			t.Errorf("step %d: Service(\"extra\") found: %v", i, got)
		}
	}
}
