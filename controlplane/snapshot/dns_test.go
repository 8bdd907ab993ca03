package snapshot_test

import (
	"slices"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
	"github.com/maestro-ml/maestro/controlplane/snapshot"
)

// TestHostNameClustersAreConsistent checks that DNS clusters, which have
// no EDS resource, leave every group's snapshot Consistent(), and that a
// later change back to IP endpoints brings the EDS resource back.
func TestHostNameClustersAreConsistent(t *testing.T) {
	tr := snapshot.NewTranslator()
	for _, addr := range []string{"localhost", "127.0.0.1", "fraud-v2.ml.svc.cluster.local"} {
		m := modeltest.Sample(9000)
		m.Cluster("fraud.v2").Localities[0].Endpoints = []model.Endpoint{{Address: addr, Port: 9002}}
		set, err := tr.Translate(m)
		if err != nil {
			t.Fatalf("%s: Translate() = %v", addr, err)
		}
		for name, snap := range set.Snapshots {
			if err := snap.Consistent(); err != nil {
				t.Errorf("%s: group %s: Consistent() = %v", addr, name, err)
			}
		}
		wantEDS := addr == "127.0.0.1"
		for _, g := range []string{modeltest.GatewayGroup, modeltest.ProxylessGroup} {
			snap := set.Snapshots[g]
			if _, ok := snap.GetResources(resource.ClusterType)["fraud.v2"]; !ok {
				t.Fatalf("%s: group %s lacks cluster fraud.v2", addr, g)
			}
			_, hasEDS := snap.GetResources(resource.EndpointType)["fraud.v2"]
			if hasEDS != wantEDS {
				t.Errorf("%s: group %s has an EDS resource for fraud.v2: %v, want %v", addr, g, hasEDS, wantEDS)
			}
			if others := len(snap.GetResources(resource.EndpointType)); !slices.Contains([]int{len(snap.GetResources(resource.ClusterType)) - 1, len(snap.GetResources(resource.ClusterType))}, others) {
				t.Errorf("%s: group %s has %d EDS resources for %d clusters", addr, g, others, len(snap.GetResources(resource.ClusterType)))
			}
		}
	}
}
