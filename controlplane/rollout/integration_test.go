package rollout_test

import (
	"strconv"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/adaptive"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/rollout"
)

const meshText = `apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud}
spec:
  versions:
    - {name: v1, endpoints: [{address: 127.0.0.1, port: 9001}]}
    - {name: v2, endpoints: [{address: 127.0.0.1, port: 9002}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud}
spec:
  service: fraud
  match: {model: fraud}
  split: [{version: v1, weight: 100}]
  rollout: {version: v2}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud-ensemble}
spec:
  service: fraud
  match: {model: fraud-ensemble}
  ensemble:
    strategy: weighted_mean
    weights: adaptive
    members: [{version: v1, model: fraud}, {version: v2, model: fraud}]
---
apiVersion: maestro.dev/v1alpha1
kind: Gateway
metadata: {name: edge}
spec: {port: 8080, routes: [fraud, fraud-ensemble]}
`

// TestOverlaysReachTheModel shows where the overlays enter: applied to the
// policy just before model.Build, their weights become the model's.
func TestOverlaysReachTheModel(t *testing.T) {
	pm, err := policy.Parse("mesh.yaml", []byte(meshText))
	if err != nil {
		t.Fatal(err)
	}
	ro := rollout.Overlay{"fraud": {{Service: "fraud", Version: "v1", Weight: 75}, {Service: "fraud", Version: "v2", Weight: 25}}}
	ad := adaptive.Overlay{"fraud-ensemble": {1, 0.05}}
	m, err := model.Build(ad.Apply(ro.Apply(pm)), model.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var split, members string
	for _, g := range m.Groups {
		for _, l := range g.Listeners {
			for _, vh := range l.Routes.VirtualHosts {
				for _, r := range vh.Routes {
					if g.Name != model.GatewayGroupName("edge") {
						continue
					}
					switch r.Name {
					case "fraud":
						for _, c := range r.Action.Clusters {
							split += c.Name + "=" + itoa(c.Weight) + " "
						}
					case "fraud-ensemble":
						for _, mem := range r.Action.Fanout.Members {
							members += mem.Cluster + "=" + ftoa(mem.Weight) + " "
						}
					}
				}
			}
		}
	}
	if split != "fraud.v1=75 fraud.v2=25 " {
		t.Errorf("gateway split %q, want the rollout's 75/25", split)
	}
	if members != "fraud.v1=1 fraud.v2=0.05 " {
		t.Errorf("gateway fanout members %q, want the adaptive weights", members)
	}
	// A rolled-back rollout gives the version weight 0: still a valid model.
	failed := rollout.Overlay{"fraud": {{Service: "fraud", Version: "v1", Weight: 100}, {Service: "fraud", Version: "v2", Weight: 0}}}
	if _, err := model.Build(failed.Apply(pm), model.BuildOptions{}); err != nil {
		t.Errorf("model of a rolled-back overlay: %v", err)
	}
	if w := pm.Route("fraud").Spec.Split[0].Weight; w != 100 {
		t.Errorf("the policy's own split changed to %d", w)
	}
}

func itoa(u uint32) string  { return strconv.FormatUint(uint64(u), 10) }
func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
