package snapshot_test

import (
	"context"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
	"github.com/maestro-ml/maestro/controlplane/snapshot"
	"github.com/maestro-ml/maestro/controlplane/xds"
)

// quiet drops go-control-plane's log lines.
type quiet struct{}

func (quiet) Debugf(string, ...any) {}
func (quiet) Infof(string, ...any)  {}
func (quiet) Warnf(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}

// TestNewClusterArrivesBeforeItsRoute sets two successive snapshots in an
// ADS snapshot cache, as the server does, where the second routes to a new
// cluster, and checks what an ADS client with every watch open receives:
// the new cluster (and its endpoints) before the route using it, and the
// cluster the route left still present.
func TestNewClusterArrivesBeforeItsRoute(t *testing.T) {
	const group = modeltest.ProxylessGroup
	tr := snapshot.NewTranslator()
	first, err := tr.Translate(modeltest.Sample(9000))
	if err != nil {
		t.Fatal(err)
	}
	c := cache.NewSnapshotCache(true, cache.IDHash{}, quiet{})
	ctx := context.Background()
	if err := c.SetSnapshot(ctx, group, first.Snapshots[group]); err != nil {
		t.Fatal(err)
	}

	// One channel for every watch: the order of receipt is the order the
	// cache answers in, as on one ADS stream.
	responses := make(chan cache.Response, 16)
	node := &corev3.Node{Id: group}
	for _, typ := range xds.Types() {
		// The client has ACKed the first snapshot: it holds its version
		// and every resource of it.
		req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typ, VersionInfo: first.Snapshots[group].GetVersion(typ)}
		sub := stream.NewSotwSubscription(nil, true)
		sub.SetReturnedResources(first.Snapshots[group].GetVersionMap(typ))
		cancel, err := c.CreateWatch(req, sub, responses)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cancel)
	}

	if len(responses) != 0 {
		t.Fatalf("%d responses before any change", len(responses))
	}

	// fraud moves from v1/v2 to v2/v3: v3 is new to the group, v1 leaves.
	m := modeltest.Sample(9000)
	m.Group(group).Listeners[0].Routes.VirtualHosts[0].Routes[0].Action.Clusters = []model.WeightedCluster{{Name: "fraud.v2", Weight: 50}, {Name: "fraud.v3", Weight: 50}}
	second, err := tr.Translate(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetSnapshot(ctx, group, second.Snapshots[group]); err != nil {
		t.Fatal(err)
	}
	var order []string
	names := map[string][]string{}
	for len(responses) > 0 {
		r := <-responses
		typ := r.GetRequest().GetTypeUrl()
		order = append(order, xds.TypeName(typ))
		dr, err := r.GetDiscoveryResponse()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range dr.GetResources() {
			res, err := a.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			names[typ] = append(names[typ], cache.GetResourceName(res))
		}
	}
	// The API listener carries its routes inline, so the listener is what
	// references the clusters here.
	lds := slices.Index(order, "listener")
	cds, eds := slices.Index(order, "cluster"), slices.Index(order, "endpoint")
	if len(order) != 3 || lds < 0 || cds < 0 || eds < 0 || cds > lds || eds > lds {
		t.Fatalf("responses in order %v, want clusters and endpoints, then the listener, and nothing else", order)
	}
	for _, n := range []string{"fraud.v1", "fraud.v2", "fraud.v3"} {
		if !slices.Contains(names[resource.ClusterType], n) || !slices.Contains(names[resource.EndpointType], n) {
			t.Errorf("cluster %s missing from the transition (clusters %v, endpoints %v)", n, names[resource.ClusterType], names[resource.EndpointType])
		}
	}
}
