package xds

import (
	"context"
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
				check("route", e.in, len(s.cur))
			}
		}
		if n == 0 {
			t.Errorf("flavour %d keeps nothing", f)
		}
	}
}
