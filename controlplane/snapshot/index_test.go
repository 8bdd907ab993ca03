package snapshot_test

import (
	"maps"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
	"github.com/maestro-ml/maestro/controlplane/snapshot"
	"github.com/maestro-ml/maestro/controlplane/xds"
)

// TestHistoryGivesColdSnapshots runs a Translator through changes that
// retire no cluster (weights of some routes, endpoints), where a snapshot
// built with history (types reused, indexes patched at the resources that
// changed) must equal the one a Translator without history builds.
func TestHistoryGivesColdSnapshots(t *testing.T) {
	weights := func(m *model.Mesh, every int, w uint32) *model.Mesh {
		for gi := range m.Groups {
			for li := range m.Groups[gi].Listeners {
				for _, vh := range m.Groups[gi].Listeners[li].Routes.VirtualHosts {
					for ri := 0; ri < len(vh.Routes); ri += every {
						if cs := vh.Routes[ri].Action.Clusters; len(cs) == 2 {
							cs[0].Weight, cs[1].Weight = w, 100-w
						}
					}
				}
			}
		}
		return m
	}
	// One Translator per sequence: moving from one to the next would
	// retire clusters.
	sequences := [][]historyStep{{
		{"sample", modeltest.Sample(9000)},
		{"sample weights", weights(modeltest.Sample(9000), 1, 70)},
		{"sample endpoints", modeltest.Sample(9100)},
	}, {
		{"large", modeltest.Large(50, 100)},
		{"large one route", weights(modeltest.Large(50, 100), 50, 60)},
		{"large some routes", weights(modeltest.Large(50, 100), 7, 30)},
		{"large unchanged", weights(modeltest.Large(50, 100), 7, 30)},
		{"large back", modeltest.Large(50, 100)},
	}}
	for _, steps := range sequences {
		checkHistory(t, steps)
	}
}

// historyStep is one mesh given to a Translator.
type historyStep struct {
	name string
	mesh *model.Mesh
}

// checkHistory translates steps in order with one Translator and compares
// each set with a cold one.
func checkHistory(t *testing.T, steps []historyStep) {
	t.Helper()
	tr := snapshot.NewTranslator()
	for _, step := range steps {
		got, err := tr.Translate(step.mesh)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		want, err := snapshot.Translate(step.mesh)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got.Version != want.Version || !maps.Equal(got.Versions, want.Versions) {
			t.Errorf("%s: versions %v, want %v", step.name, got.Versions, want.Versions)
		}
		for g, ws := range want.Snapshots {
			gs := got.Snapshots[g]
			for _, typ := range xds.Types() {
				if gs.GetVersion(typ) != ws.GetVersion(typ) {
					t.Errorf("%s group %s %s: version %q, want %q", step.name, g, typ, gs.GetVersion(typ), ws.GetVersion(typ))
				}
				if !maps.Equal(gs.GetVersionMap(typ), ws.GetVersionMap(typ)) {
					t.Errorf("%s group %s %s: version map differs", step.name, g, typ)
				}
				gr, wr := gs.GetResources(typ), ws.GetResources(typ)
				if len(gr) != len(wr) {
					t.Fatalf("%s group %s %s: %d resources, want %d", step.name, g, typ, len(gr), len(wr))
				}
				for name, w := range wr {
					if r, ok := gr[name]; !ok || !proto.Equal(r, w) {
						t.Errorf("%s group %s %s %q: differs from a cold build", step.name, g, typ, name)
					}
				}
			}
		}
	}
}
