package model_test

import (
	"slices"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// TestBuildSplitInAnyOrder builds a route whose split lists its versions
// in and out of name order: every route made from it (gRPC and REST through
// the gateway, the API listener) must carry the split sorted, whether the
// builder shared one slice among them or copied it.
func TestBuildSplitInAnyOrder(t *testing.T) {
	for name, split := range map[string]string{
		"sorted":   "[{version: v0, weight: 90}, {version: v1, weight: 10}]",
		"unsorted": "[{version: v1, weight: 10}, {version: v0, weight: 90}]",
	} {
		t.Run(name, func(t *testing.T) {
			text := "apiVersion: maestro.dev/v1alpha1\nkind: Mesh\nmetadata: {name: m}\nspec: {mtls: {mode: DISABLE}}\n" +
				"---\napiVersion: maestro.dev/v1alpha1\nkind: Service\nmetadata: {name: s}\nspec:\n  versions:\n" +
				"    - {name: v0, endpoints: [{address: 10.0.0.1, port: 9000}]}\n    - {name: v1, endpoints: [{address: 10.0.0.2, port: 9000}]}\n" +
				"---\napiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec:\n  service: s\n  match: {model: r, protocol: any}\n  split: " + split + "\n" +
				"---\napiVersion: maestro.dev/v1alpha1\nkind: Gateway\nmetadata: {name: edge}\nspec:\n  port: 8080\n  routes: [r]\n"
			pm, err := policy.Parse("m.yaml", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			m, err := model.Build(pm, model.BuildOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := []model.WeightedCluster{{Name: "s.v0", Weight: 90}, {Name: "s.v1", Weight: 10}}
			var n int
			for _, g := range m.Groups {
				for _, l := range g.Listeners {
					for _, vh := range l.Routes.VirtualHosts {
						for _, r := range vh.Routes {
							n++
							if !slices.Equal(r.Action.Clusters, want) {
								t.Errorf("group %s route %s: clusters %v, want %v", g.Name, r.Name, r.Action.Clusters, want)
							}
						}
					}
				}
			}
			if n != 3 {
				t.Errorf("%d routes, want 3 (gRPC, REST, API listener)", n)
			}
		})
	}
}
