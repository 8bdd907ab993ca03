package model_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// strictSidecar makes fraud a sidecar'd service under STRICT mTLS, so that
// the gateway reaches its versions through mTLS copies of their clusters.
const strictSidecar = `---
apiVersion: maestro.dev/v1alpha1
kind: Mesh
metadata: {name: strict}
spec:
  mtls: {mode: STRICT}
---
apiVersion: maestro.dev/v1alpha1
kind: Sidecar
metadata: {name: fraud, namespace: ml}
spec:
  service: fraud
  inbound: {appPort: 9000}
`

// TestBuildObservesAdaptiveEnsembles: with an observer, only adaptive
// ensembles post observations, naming their members as the tuner does
// (whatever cluster the caller reaches them by), through the observer
// cluster the gateway's group receives; without one nothing changes.
func TestBuildObservesAdaptiveEnsembles(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("..", "xds", "testdata", "in", "adaptive.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	observer := &model.Observer{Endpoint: model.Endpoint{Address: "cp.example", Port: 18001}, Percent: 25}
	tests := map[string]struct {
		policy   string
		observer *model.Observer
		clusters []string // the members' clusters as the gateway reaches them, in filter order
	}{
		"plain":       {policy: string(in), observer: observer, clusters: []string{"fraud.logistic", "fraud.v1", "fraud.v2"}},
		"strict mTLS": {policy: string(in) + strictSidecar, observer: observer},
		"no observer": {policy: string(in)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mesh.yaml")
			if err := os.WriteFile(path, []byte(tc.policy), 0o600); err != nil {
				t.Fatal(err)
			}
			pm := load(t, path)
			m, err := model.Build(pm, model.BuildOptions{Secrets: fakeSecrets(pm), Observer: tc.observer})
			if err != nil {
				t.Fatal(err)
			}
			edge := listener(t, m, "gateway-edge", "edge")
			c := m.Cluster(model.ObserverCluster)
			if tc.observer == nil {
				if c != nil {
					t.Errorf("observer cluster %+v built without an observer", c)
				}
				for _, r := range edge.Routes.VirtualHosts[0].Routes {
					if f := r.Action.Fanout; f != nil && f.Observe != nil {
						t.Errorf("route %s observed without an observer", r.Name)
					}
				}
				return
			}
			if c == nil || c.Protocol != model.ProtocolHTTP || len(c.Localities) != 1 ||
				!slices.Equal(c.Localities[0].Endpoints, []model.Endpoint{tc.observer.Endpoint}) {
				t.Fatalf("observer cluster %+v, want plain HTTP to %+v", c, tc.observer.Endpoint)
			}
			observed := 0
			for _, r := range edge.Routes.VirtualHosts[0].Routes {
				f := r.Action.Fanout
				if f == nil {
					continue
				}
				static := strings.HasPrefix(r.Name, "fraud-static")
				if static != (f.Observe == nil) {
					t.Errorf("route %s: observe %+v; only the adaptive route is observed", r.Name, f.Observe)
					continue
				}
				if static {
					continue
				}
				observed++
				if want := (model.FanoutObserve{Cluster: model.ObserverCluster, Route: "fraud-adaptive", Percent: 25}); *f.Observe != want {
					t.Errorf("route %s observe %+v, want %+v", r.Name, *f.Observe, want)
				}
				var names, clusters []string
				for _, mem := range f.Members {
					names = append(names, mem.Name)
					clusters = append(clusters, mem.Cluster)
				}
				if want := []string{"fraud.logistic/fraud-logistic", "fraud.v1/fraud", "fraud.v2/fraud"}; !slices.Equal(names, want) {
					t.Errorf("route %s member names %v (clusters %v), want %v", r.Name, names, clusters, want)
				}
				if tc.clusters != nil && !slices.Equal(clusters, tc.clusters) {
					t.Errorf("route %s member clusters %v, want %v", r.Name, clusters, tc.clusters)
				}
				if tc.clusters == nil && slices.Contains(clusters, "fraud.v1") {
					t.Errorf("route %s member clusters %v: the strict case must reach members through mTLS copies", r.Name, clusters)
				}
			}
			if observed == 0 {
				t.Error("no observed route on the gateway")
			}
		})
	}
}
