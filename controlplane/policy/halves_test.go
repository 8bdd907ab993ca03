package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestHalvesDefaultAndValidateEveryRoute: a mesh with enough routes to be
// defaulted and validated in two halves gets every route's defaults and
// every route's problems, from both halves and at their borders, the same
// from a cold parse and from a Loader reusing the documents.
func TestHalvesDefaultAndValidateEveryRoute(t *testing.T) {
	n := 2 * splitAbove
	bad := map[int]bool{0: true, splitAbove - 1: true, splitAbove: true, n - 1: true}
	var sb strings.Builder
	sb.WriteString(svc("s", "{"+v1+"}"))
	for i := range n {
		service := "s"
		if bad[i] {
			service = "nope"
		}
		sb.WriteString(route(fmt.Sprintf("r%04d", i), fmt.Sprintf("{service: %s, split: [{weight: 100}]}", service)))
	}
	good := strings.ReplaceAll(sb.String(), "service: nope", "service: s")

	l := &Loader{}
	for _, load := range []struct {
		name  string
		parse func(string, []byte) (*Mesh, error)
	}{{"cold", Parse}, {"loader", l.Parse}, {"loader again", l.Parse}} {
		m, err := load.parse("p.yaml", []byte(good))
		if err != nil {
			t.Fatalf("%s: %v", load.name, err)
		}
		for i, r := range m.Routes {
			if sp := r.Spec.Split; len(sp) != 1 || sp[0].Service != "s" || sp[0].Version != "v1" {
				t.Fatalf("%s: route %d split %v, want s v1", load.name, i, sp)
			}
		}
		_, err = load.parse("p.yaml", []byte(sb.String()))
		var list ErrorList
		if !errors.As(err, &list) {
			t.Fatalf("%s: got %v, want an ErrorList", load.name, err)
		}
		var got []string
		for _, e := range list {
			if e.Field == "spec.service" {
				got = append(got, e.Name)
			}
		}
		want := []string{"r0000", fmt.Sprintf("r%04d", splitAbove-1), fmt.Sprintf("r%04d", splitAbove), fmt.Sprintf("r%04d", n-1)}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: unknown services reported for %v, want %v", load.name, got, want)
		}
	}
}
