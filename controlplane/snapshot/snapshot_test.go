package snapshot_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
	"github.com/maestro-ml/maestro/controlplane/snapshot"
	"github.com/maestro-ml/maestro/controlplane/xds"
)

func TestTranslateSample(t *testing.T) {
	set, err := snapshot.Translate(modeltest.Sample(9000))
	if err != nil {
		t.Fatalf("Translate() = %v", err)
	}
	want := []string{modeltest.GatewayGroup, modeltest.GRPCServerGroup, modeltest.ProxylessGroup, modeltest.SidecarGroup}
	if got := slices.Sorted(maps.Keys(set.Snapshots)); !slices.Equal(got, want) {
		t.Fatalf("groups = %v, want %v", got, want)
	}
	if !slices.Equal(set.Changed, want) {
		t.Errorf("Changed = %v, want every group on a first set", set.Changed)
	}
	for name, snap := range set.Snapshots {
		if err := snap.Consistent(); err != nil {
			t.Errorf("%s: Consistent() = %v", name, err)
		}
	}
	gw := set.Snapshots[modeltest.GatewayGroup]
	if got := slices.Sorted(maps.Keys(gw.GetResources(resource.ClusterType))); !slices.Equal(got, []string{"churn.v1", "fraud.v1", "fraud.v2", "fraud.v3", "otel-collector", "recs.a", "recs.b"}) {
		t.Errorf("gateway clusters = %v", got)
	}
	px := set.Snapshots[modeltest.ProxylessGroup]
	if n := len(px.GetResources(resource.RouteType)); n != 0 {
		t.Errorf("proxyless group has %d RDS resources; API listeners carry routes inline", n)
	}
	if n := len(px.GetResources(resource.SecretType)); n != 0 {
		t.Errorf("proxyless group has %d secrets; gRPC reads certificates from providers", n)
	}
	sc := set.Snapshots[modeltest.SidecarGroup]
	if got := slices.Sorted(maps.Keys(sc.GetResources(resource.SecretType))); !slices.Equal(got, []string{"spiffe://maestro.local/ns/ml/sa/fraud", "trust-bundle"}) {
		t.Errorf("sidecar secrets = %v", got)
	}
}

func TestUnchangedMeshKeepsVersions(t *testing.T) {
	tr := snapshot.NewTranslator()
	first, err := tr.Translate(modeltest.Sample(9000))
	if err != nil {
		t.Fatal(err)
	}
	second, err := tr.Translate(modeltest.Sample(9000))
	if err != nil {
		t.Fatal(err)
	}
	if first.Version != second.Version || len(second.Changed) != 0 {
		t.Fatalf("unchanged mesh: version %s -> %s, changed %v", first.Version, second.Version, second.Changed)
	}
	for name, snap := range second.Snapshots {
		if snap != first.Snapshots[name] {
			t.Errorf("%s: a new snapshot object for unchanged content", name)
		}
	}
}

// TestOnlyWhatChangedIsPushed checks per-type and per-resource versions: a
// weight change touches one route configuration, an endpoint change one
// EDS resource, and nothing else.
func TestOnlyWhatChangedIsPushed(t *testing.T) {
	tests := map[string]struct {
		edit        func(m *model.Mesh)
		wantChanged []string
		wantDelta   map[resource.Type][]string
	}{
		"weights": {
			edit: func(m *model.Mesh) {
				r := &m.Group(modeltest.GatewayGroup).Listeners[0].Routes.VirtualHosts[0].Routes[0]
				r.Action.Clusters[0].Weight, r.Action.Clusters[1].Weight = 50, 50
			},
			wantChanged: []string{modeltest.GatewayGroup},
			wantDelta:   map[resource.Type][]string{resource.RouteType: {"gateway-http"}},
		},
		"endpoints": {
			edit: func(m *model.Mesh) {
				m.Cluster("churn.v1").Localities[0].Endpoints[0].Port = 7777
			},
			wantChanged: []string{modeltest.GatewayGroup, modeltest.SidecarGroup},
			wantDelta:   map[resource.Type][]string{resource.EndpointType: {"churn.v1"}},
		},
		"ensemble": {
			edit: func(m *model.Mesh) {
				m.Group(modeltest.GatewayGroup).Listeners[0].Routes.VirtualHosts[0].Routes[3].Action.Fanout.Quorum = 2
			},
			wantChanged: []string{modeltest.GatewayGroup},
			// The fanout config rides ECDS alone: no listener or route moves.
			wantDelta: map[resource.Type][]string{resource.ExtensionConfigType: {"gateway-http.fanout"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tr := snapshot.NewTranslator()
			before, err := tr.Translate(modeltest.Sample(9000))
			if err != nil {
				t.Fatal(err)
			}
			m := modeltest.Sample(9000)
			tc.edit(m)
			after, err := tr.Translate(m)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(after.Changed, tc.wantChanged) {
				t.Errorf("Changed = %v, want %v", after.Changed, tc.wantChanged)
			}
			gw := modeltest.GatewayGroup
			got := snapshot.Changes(before.Snapshots[gw], after.Snapshots[gw])
			if !maps.EqualFunc(got, tc.wantDelta, slices.Equal) {
				t.Errorf("gateway delta = %v, want %v", got, tc.wantDelta)
			}
			for _, typ := range xds.Types() {
				_, changed := tc.wantDelta[typ]
				moved := before.Snapshots[gw].GetVersion(typ) != after.Snapshots[gw].GetVersion(typ)
				if moved != changed {
					t.Errorf("%s: type version moved = %v, want %v", typ, moved, changed)
				}
			}
		})
	}
}

func TestMakeBeforeBreak(t *testing.T) {
	tr := snapshot.NewTranslator()
	if _, err := tr.Translate(modeltest.Sample(9000)); err != nil {
		t.Fatal(err)
	}
	// The proxyless group stops sending to fraud.v2.
	m := modeltest.Sample(9000)
	r := &m.Group(modeltest.ProxylessGroup).Listeners[0].Routes.VirtualHosts[0].Routes[0]
	r.Action.Clusters = []model.WeightedCluster{{Name: "fraud.v1", Weight: 1}}
	next, err := tr.Translate(m)
	if err != nil {
		t.Fatal(err)
	}
	px := next.Snapshots[modeltest.ProxylessGroup]
	if err := px.Consistent(); err != nil {
		t.Fatalf("Consistent() = %v", err)
	}
	if _, ok := px.GetResources(resource.ClusterType)["fraud.v2"]; !ok {
		t.Fatalf("fraud.v2 dropped in the same version that stopped routing to it")
	}
	if _, ok := px.GetResources(resource.EndpointType)["fraud.v2"]; !ok {
		t.Fatalf("fraud.v2's endpoints dropped while the cluster is kept")
	}
	settled, err := tr.Settle()
	if err != nil || settled == nil {
		t.Fatalf("Settle() = %v, %v; want a set", settled, err)
	}
	px = settled.Snapshots[modeltest.ProxylessGroup]
	if _, ok := px.GetResources(resource.ClusterType)["fraud.v2"]; ok {
		t.Errorf("fraud.v2 still present after Settle")
	}
	if err := px.Consistent(); err != nil {
		t.Errorf("settled Consistent() = %v", err)
	}
	if !slices.Equal(settled.Changed, []string{modeltest.ProxylessGroup}) {
		t.Errorf("Settle changed %v, want only the proxyless group", settled.Changed)
	}
	if again, err := tr.Settle(); again != nil || err != nil {
		t.Errorf("second Settle() = %v, %v; want nil, nil", again, err)
	}
	// The next Translate of the same mesh is unchanged.
	same, err := tr.Translate(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(same.Changed) != 0 || same.Version != settled.Version {
		t.Errorf("after Settle, same mesh changed %v", same.Changed)
	}
}

func TestRetiredDroppedByNextTranslate(t *testing.T) {
	tr := snapshot.NewTranslator()
	if _, err := tr.Translate(modeltest.Sample(9000)); err != nil {
		t.Fatal(err)
	}
	m := modeltest.Sample(9000)
	m.Group(modeltest.ProxylessGroup).Listeners[0].Routes.VirtualHosts[0].Routes[0].Action.Clusters = []model.WeightedCluster{{Name: "fraud.v1", Weight: 1}}
	if _, err := tr.Translate(m); err != nil {
		t.Fatal(err)
	}
	third, err := tr.Translate(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := third.Snapshots[modeltest.ProxylessGroup].GetResources(resource.ClusterType)["fraud.v2"]; ok {
		t.Errorf("fraud.v2 still present one version later")
	}
}

func TestTranslateErrors(t *testing.T) {
	tests := map[string]struct {
		edit func(m *model.Mesh)
		is   error
		want string
	}{
		"invalid model": {
			edit: func(m *model.Mesh) { m.Clusters[0].Protocol = "smtp" },
			is:   model.ErrInvalid,
			want: `cluster "churn.v1": unknown protocol "smtp"`,
		},
		"resource fails ValidateAll": {
			edit: func(m *model.Mesh) {
				m.Group(modeltest.GatewayGroup).Listeners[0].Routes.VirtualHosts[0].Routes[0].Match.Headers[0].Name = "bad header\n"
			},
			want: `group "gateway": route "gateway-http": virtual host "models": route "fraud": invalid Route.Match`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tr := snapshot.NewTranslator()
			good, err := tr.Translate(modeltest.Sample(9000))
			if err != nil {
				t.Fatal(err)
			}
			m := modeltest.Sample(9000)
			tc.edit(m)
			_, err = tr.Translate(m)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Translate() = %v; want an error containing %q", err, tc.want)
			}
			// The last good set stays the base: the same good mesh is unchanged.
			again, err := tr.Translate(modeltest.Sample(9000))
			if err != nil || again.Version != good.Version || len(again.Changed) != 0 {
				t.Errorf("after a failed Translate: %v, version %s vs %s, changed %v", err, again.Version, good.Version, again.Changed)
			}
		})
	}
}

// TestConcurrentTranslate runs translations from several goroutines (the
// watcher and the certificate rotation both translate); with -race it
// checks the translator serialises them, and every result is consistent.
func TestConcurrentTranslate(t *testing.T) {
	tr := snapshot.NewTranslator()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				set, err := tr.Translate(modeltest.Sample(uint32(9000 + 100*((i+j)%2))))
				if err != nil {
					errs <- err
					return
				}
				for name, snap := range set.Snapshots {
					if err := snap.Consistent(); err != nil {
						errs <- fmt.Errorf("%s: %w", name, err)
						return
					}
				}
				if _, err := tr.Settle(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestWarming(t *testing.T) {
	tr := snapshot.NewTranslator()
	first, err := tr.Translate(modeltest.Sample(9000))
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Warming) != 0 {
		t.Errorf("a first set has warming snapshots: %v", slices.Sorted(maps.Keys(first.Warming)))
	}
	// Weights only: no new cluster, nothing to warm.
	m := modeltest.Sample(9000)
	m.Group(modeltest.ProxylessGroup).Listeners[0].Routes.VirtualHosts[0].Routes[0].Action.Clusters[0].Weight = 50
	weights, err := tr.Translate(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(weights.Warming) != 0 {
		t.Errorf("a weight change has warming snapshots: %v", slices.Sorted(maps.Keys(weights.Warming)))
	}
	// fraud.v3 joins the proxyless group.
	m = modeltest.Sample(9000)
	m.Group(modeltest.ProxylessGroup).Listeners[0].Routes.VirtualHosts[0].Routes[0].Action.Clusters = []model.WeightedCluster{{Name: "fraud.v2", Weight: 50}, {Name: "fraud.v3", Weight: 50}}
	next, err := tr.Translate(m)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(next.Warming)); !slices.Equal(got, []string{modeltest.ProxylessGroup}) {
		t.Fatalf("warming groups = %v, want the proxyless group only", got)
	}
	warm, prev, final := next.Warming[modeltest.ProxylessGroup], weights.Snapshots[modeltest.ProxylessGroup], next.Snapshots[modeltest.ProxylessGroup]
	if err := warm.Consistent(); err != nil {
		t.Fatalf("warming Consistent() = %v", err)
	}
	if got := slices.Sorted(maps.Keys(warm.GetResources(resource.ClusterType))); !slices.Equal(got, []string{"fraud.v1", "fraud.v2", "fraud.v3"}) {
		t.Errorf("warming clusters = %v, want the old and the new", got)
	}
	if warm.GetVersion(resource.ListenerType) != prev.GetVersion(resource.ListenerType) {
		t.Errorf("warming changed the listeners; they must wait for the final step")
	}
	if warm.GetVersion(resource.ClusterType) != final.GetVersion(resource.ClusterType) {
		t.Errorf("warming clusters differ from the final step's")
	}
	if final.GetVersion(resource.ListenerType) == prev.GetVersion(resource.ListenerType) {
		t.Errorf("the final step does not change the listener")
	}
}
