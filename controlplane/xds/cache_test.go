package xds_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
	"github.com/maestro-ml/maestro/controlplane/xds"
)

// TestCacheFollowsMovedObjects feeds one cache a sequence of meshes whose
// clusters, listeners and routes change, appear, disappear and move to
// other positions (the cache finds previous entries by position first, by
// name otherwise, and keeps cluster positions for route references), and
// checks every group's resources and versions against a cold build.
func TestCacheFollowsMovedObjects(t *testing.T) {
	steps := []struct {
		name string
		mesh func() *model.Mesh
	}{
		{"sample", func() *model.Mesh { return modeltest.Sample(9000) }},
		{"weights", func() *model.Mesh {
			m := modeltest.Sample(9000)
			for gi := range m.Groups {
				for li := range m.Groups[gi].Listeners {
					for _, vh := range m.Groups[gi].Listeners[li].Routes.VirtualHosts {
						for ri := range vh.Routes {
							if cs := vh.Routes[ri].Action.Clusters; len(cs) == 2 {
								cs[0].Weight, cs[1].Weight = cs[1].Weight, cs[0].Weight
							}
						}
					}
				}
			}
			return m
		}},
		{"fault on a last route", func() *model.Mesh {
			m := modeltest.Sample(9000)
			faults(m, &model.Fault{AbortPercent: 5, AbortHTTPStatus: 503})
			return m
		}},
		{"no faults", func() *model.Mesh {
			m := modeltest.Sample(9000)
			faults(m, nil)
			return m
		}},
		// Which filters a route disables depends on its listener's
		// filters: unchanged routes must follow them.
		{"no slo filter", func() *model.Mesh {
			m := modeltest.Sample(9000)
			for gi := range m.Groups {
				for li := range m.Groups[gi].Listeners {
					l := &m.Groups[gi].Listeners[li]
					l.Filters = slices.DeleteFunc(l.Filters, func(f model.WasmFilter) bool { return f.Kind == model.FilterSLO })
				}
			}
			return m
		}},
		{"slo filter back", func() *model.Mesh { return modeltest.Sample(9000) }},
		{"cluster prepended", func() *model.Mesh {
			m := modeltest.Sample(9000)
			extra := m.Clusters[0]
			extra.Name = "a-first.v0"
			m.Clusters = slices.Insert(m.Clusters, 0, extra)
			for gi := range m.Groups {
				m.Groups[gi].ExtraClusters = append(m.Groups[gi].ExtraClusters, extra.Name)
			}
			return m
		}},
		{"first route and listener gone", func() *model.Mesh {
			m := modeltest.Sample(9000)
			for gi := range m.Groups {
				g := &m.Groups[gi]
				if len(g.Listeners) > 1 {
					g.Listeners = g.Listeners[1:]
				}
				for li := range g.Listeners {
					for vi := range g.Listeners[li].Routes.VirtualHosts {
						if vh := &g.Listeners[li].Routes.VirtualHosts[vi]; len(vh.Routes) > 1 {
							vh.Routes = vh.Routes[1:]
						}
					}
				}
			}
			return m
		}},
		{"endpoints", func() *model.Mesh { return modeltest.Sample(9100) }},
		{"large", func() *model.Mesh { return modeltest.Large(30, 60) }},
		{"large grown", func() *model.Mesh { return modeltest.Large(40, 80) }},
		{"large again", func() *model.Mesh { return modeltest.Large(40, 80) }},
	}
	c := xds.NewCache()
	for _, step := range steps {
		m := step.mesh()
		for _, g := range m.Groups {
			cold, err := xds.ForGroup(m, g.Name)
			if err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			// Twice: the second call in one translation reuses what the
			// first built for this mesh.
			for range 2 {
				cached, err := c.ForGroup(m, g.Name)
				if err != nil {
					t.Fatalf("%s: %v", step.name, err)
				}
				for _, typ := range xds.Types() {
					if len(cold.Items[typ]) != len(cached.Items[typ]) {
						t.Fatalf("%s group %s %s: %d cold, %d cached", step.name, g.Name, typ, len(cold.Items[typ]), len(cached.Items[typ]))
					}
					for i := range cold.Items[typ] {
						diff(t, cold.Items[typ][i], cached.Items[typ][i])
					}
					if !slices.Equal(cold.Versions[typ], cached.Versions[typ]) {
						t.Errorf("%s group %s %s versions: %v cold, %v cached", step.name, g.Name, typ, cold.Versions[typ], cached.Versions[typ])
					}
				}
			}
		}
		c.Sweep()
	}
}

// faults sets f on the last route of every virtual host of m, and removes
// the faults of the other routes: an RDS listener's resource depends on
// whether any of its routes injects faults.
func faults(m *model.Mesh, f *model.Fault) {
	for gi := range m.Groups {
		for li := range m.Groups[gi].Listeners {
			for _, vh := range m.Groups[gi].Listeners[li].Routes.VirtualHosts {
				for ri := range vh.Routes {
					vh.Routes[ri].Action.Fault = nil
				}
				if n := len(vh.Routes); n > 0 && f != nil {
					copied := *f
					vh.Routes[n-1].Action.Fault = &copied
				}
			}
		}
	}
}

// TestForGroupsMatchesForGroup checks that translating the groups of a
// mesh concurrently gives, group by group and in order, what ForGroup
// gives: resources, versions and errors, also for a mesh that is not valid
// (a group with a dangling cluster, two groups sharing a name).
func TestForGroupsMatchesForGroup(t *testing.T) {
	dangling := func() *model.Mesh {
		m := modeltest.Sample(9000)
		m.Groups[0].ExtraClusters = append(m.Groups[0].ExtraClusters, "no-such-cluster")
		return m
	}
	twice := func() *model.Mesh {
		m := modeltest.Sample(9000)
		m.Groups = append(m.Groups, m.Groups...)
		return m
	}
	c := xds.NewCache()
	for name, m := range map[string]*model.Mesh{
		"sample":    modeltest.Sample(9000),
		"endpoints": modeltest.Sample(9100),
		"dangling":  dangling(),
		"twice":     twice(),
	} {
		res, errs := c.ForGroups(context.Background(), m)
		if len(res) != len(m.Groups) || len(errs) != len(m.Groups) {
			t.Fatalf("%s: %d results and %d errors for %d groups", name, len(res), len(errs), len(m.Groups))
		}
		for i, g := range m.Groups {
			cold, err := xds.ForGroup(m, g.Name)
			if fmt.Sprint(err) != fmt.Sprint(errs[i]) {
				t.Errorf("%s group %s: error %v, want %v", name, g.Name, errs[i], err)
			}
			if err != nil {
				continue
			}
			for _, typ := range xds.Types() {
				if len(cold.Items[typ]) != len(res[i].Items[typ]) {
					t.Fatalf("%s group %s %s: %d cold, %d concurrent", name, g.Name, typ, len(cold.Items[typ]), len(res[i].Items[typ]))
				}
				for k := range cold.Items[typ] {
					diff(t, cold.Items[typ][k], res[i].Items[typ][k])
				}
				if !slices.Equal(cold.Versions[typ], res[i].Versions[typ]) {
					t.Errorf("%s group %s %s versions differ", name, g.Name, typ)
				}
			}
		}
		c.Sweep()
	}
}
