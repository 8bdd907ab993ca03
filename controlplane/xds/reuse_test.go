package xds

import (
	"context"
	"slices"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
)

// TestSweepKeepsOnlyLastMesh checks that, after a translation and its
// Sweep, the cache holds entries built from the last mesh's objects only
// (an entry for an older object would keep that mesh alive for nothing),
// none left in progress, and nothing for groups the mesh no longer has.
func TestSweepKeepsOnlyLastMesh(t *testing.T) {
	shrunk := modeltest.Sample(9100)
	shrunk.Groups = shrunk.Groups[1:]
	c := NewCache()
	for _, m := range []*model.Mesh{modeltest.Sample(9000), modeltest.Sample(9100), shrunk} {
		_, errs := c.ForGroups(context.Background(), m)
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		c.Sweep()
	}
	m := shrunk
	objects := map[any]bool{}
	for i := range m.Clusters {
		objects[&m.Clusters[i]] = true
	}
	groups := map[string]bool{}
	for gi := range m.Groups {
		g := &m.Groups[gi]
		groups[g.Name] = true
		for li := range g.Listeners {
			l := &g.Listeners[li]
			objects[l] = true
			for _, vh := range l.Routes.VirtualHosts {
				for ri := range vh.Routes {
					objects[&vh.Routes[ri]] = true
				}
			}
		}
	}
	for f := range c.flavours {
		mem := &c.flavours[f]
		for name := range mem.outs {
			if !groups[name] {
				t.Errorf("flavour %d keeps the output of group %q, which the mesh no longer has", f, name)
			}
		}
		n := 0
		check := func(kind string, in any, cur int) {
			n++
			if !objects[in] {
				t.Errorf("flavour %d: a %s entry was built from an object of an older mesh", f, kind)
			}
			if cur != 0 {
				t.Errorf("flavour %d: %s entries of a finished translation left in progress", f, kind)
			}
		}
		for _, s := range mem.cds {
			for _, e := range s.prev {
				if e != nil {
					check("cluster", e.in, len(s.cur))
				}
			}
		}
		for _, s := range mem.lds {
			for _, e := range s.prev {
				check("listener", e.in.l, len(s.cur))
			}
		}
		for _, s := range mem.routes {
			for _, e := range s.prev {
				check("route", e.in.r, len(s.cur))
			}
		}
		if n == 0 {
			t.Errorf("flavour %d keeps nothing", f)
		}
	}
}

// TestSlotsReuse checks the seam between translation and the cache: over
// successive translations of one list, an object is rebuilt exactly when
// it differs from the one its entry was built from, wherever it moved in
// the list, and an object dropped from a translation is forgotten.
func TestSlotsReuse(t *testing.T) {
	type obj struct{ name, value string }
	same := func(prev, in *obj) bool { return *prev == *in }
	steps := []struct {
		name  string
		objs  []obj
		built []string // the objects build is called for, in order
	}{
		{"first", []obj{{"a", "1"}, {"b", "1"}, {"c", "1"}}, []string{"a", "b", "c"}},
		{"unchanged", []obj{{"a", "1"}, {"b", "1"}, {"c", "1"}}, nil},
		{"one changed", []obj{{"a", "1"}, {"b", "2"}, {"c", "1"}}, []string{"b"}},
		{"one prepended, all moved", []obj{{"0", "1"}, {"a", "1"}, {"b", "2"}, {"c", "1"}}, []string{"0"}},
		{"reversed", []obj{{"c", "1"}, {"b", "2"}, {"a", "1"}, {"0", "1"}}, nil},
		{"b dropped", []obj{{"c", "1"}, {"a", "1"}, {"0", "1"}}, nil},
		{"b back, as it was", []obj{{"c", "1"}, {"a", "1"}, {"b", "2"}, {"0", "1"}}, []string{"b"}},
	}
	tab := table[*obj, string]{}
	for gen, step := range steps {
		var built []string
		s := tab.slots(uint64(gen+1), list{group: "g"}, len(step.objs))
		for i := range step.objs {
			o := &step.objs[i]
			// Twice: a second ask in one translation finds the first's entry.
			for range 2 {
				got, err := s.reuse(i, o.name, o, same, func(in *obj, _ *entry[*obj, string]) (string, error) {
					built = append(built, in.name)
					return in.name + "=" + in.value, nil
				})
				if want := o.name + "=" + o.value; err != nil || got != want {
					t.Fatalf("%s: reuse(%s) = %q, %v; want %q", step.name, o.name, got, err, want)
				}
			}
		}
		if !slices.Equal(built, step.built) {
			t.Errorf("%s: built %q, want %q", step.name, built, step.built)
		}
		tab.sweep(uint64(gen + 1))
	}
	var none *slots[*obj, string]
	calls := 0
	for range 2 {
		_, _ = none.reuse(0, "a", &obj{"a", "1"}, same, func(*obj, *entry[*obj, string]) (string, error) { calls++; return "", nil })
	}
	if calls != 2 {
		t.Errorf("nil slots built %d times for two asks, want 2 (no reuse without a cache)", calls)
	}
}

// TestFlavourFreeClustersShared checks that a cluster whose resources do
// not depend on the flavour is kept once for the Envoy and the proxyless
// groups, and that one with TLS or a health check is not.
func TestFlavourFreeClustersShared(t *testing.T) {
	m := modeltest.Sample(9000)
	c := NewCache()
	_, errs := c.ForGroups(context.Background(), m)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	envoy, grpc := c.flavours[0].cds[list{}].cur, c.flavours[1].cds[list{}].cur
	var free, bound int
	for i := range m.Clusters {
		if envoy[i] == nil || grpc[i] == nil {
			continue // not used by groups of both flavours
		}
		shared := envoy[i].out.cds.res == grpc[i].out.cds.res
		if want := flavourFree(&m.Clusters[i]); shared != want {
			t.Errorf("cluster %q: shared %v, want %v", m.Clusters[i].Name, shared, want)
		}
		if e, g := envoy[i].out.eds, grpc[i].out.eds; shared && (e == nil || g == nil || e.res != g.res) {
			t.Errorf("cluster %q: endpoints not shared with the cluster", m.Clusters[i].Name)
		}
		if shared {
			free++
		} else {
			bound++
		}
	}
	if free == 0 || bound == 0 {
		t.Fatalf("sample mesh has %d shared and %d flavour-bound clusters used by both flavours; want some of each", free, bound)
	}
}
