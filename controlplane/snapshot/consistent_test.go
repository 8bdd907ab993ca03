package snapshot

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// typed is one type's resources at a version, for building snapshots.
type typed struct {
	version string
	items   []types.Resource
}

func snapOf(t *testing.T, byType map[resource.Type]typed) *cache.Snapshot {
	t.Helper()
	s := &cache.Snapshot{}
	for typ, r := range byType {
		s.Resources[cache.GetResponseType(typ)] = cache.NewResources(r.version, r.items)
	}
	return s
}

func edsCluster(name string) types.Resource {
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}}
}

func endpoints(name string) types.Resource {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name}
}

func rdsListener(t *testing.T, name, route string) types.Resource {
	t.Helper()
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix:     name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: route}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &listenerv3.Listener{Name: name, FilterChains: []*listenerv3.FilterChain{{
		Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}},
	}}}
}

// TestConsistentChecksWhatMoved: a reference group (clusters with
// endpoints, listeners with routes) is walked unless each of its types has
// the version of the already-checked snapshot; a group that moved is
// checked by Consistent() as a whole.
func TestConsistentChecksWhatMoved(t *testing.T) {
	good := map[resource.Type]typed{
		resource.ClusterType:  {"c1", []types.Resource{edsCluster("a")}},
		resource.EndpointType: {"e1", []types.Resource{endpoints("a")}},
		resource.ListenerType: {"l1", []types.Resource{rdsListener(t, "in", "r")}},
		resource.RouteType:    {"r1", []types.Resource{&routev3.RouteConfiguration{Name: "r"}}},
	}
	with := func(changes map[resource.Type]typed) map[resource.Type]typed {
		out := map[resource.Type]typed{}
		for k, v := range good {
			out[k] = v
		}
		for k, v := range changes {
			out[k] = v
		}
		return out
	}
	missingEDS := typed{"c2", []types.Resource{edsCluster("a"), edsCluster("b")}}
	missingRoute := typed{"l2", []types.Resource{rdsListener(t, "in", "r"), rdsListener(t, "in2", "r2")}}
	tests := map[string]struct {
		snap    map[resource.Type]typed
		checked map[resource.Type]typed // nil: no previous snapshot
		want    string                  // error substring; "" for none
	}{
		"consistent, no history":                 {snap: good},
		"consistent, same as checked":            {snap: good, checked: good},
		"cluster without endpoints, no history":  {snap: with(map[resource.Type]typed{resource.ClusterType: missingEDS}), want: "endpoint"},
		"cluster without endpoints, moved":       {snap: with(map[resource.Type]typed{resource.ClusterType: missingEDS}), checked: good, want: "endpoint"},
		"listener without route, moved":          {snap: with(map[resource.Type]typed{resource.ListenerType: missingRoute}), checked: good, want: "Route"},
		"route removed under the same listeners": {snap: with(map[resource.Type]typed{resource.RouteType: {"r2", nil}}), checked: good, want: "Route"},
		"endpoints removed, clusters the same":   {snap: with(map[resource.Type]typed{resource.EndpointType: {"e2", nil}}), checked: good, want: "endpoint"},
		// The premise: a group whose versions equal the checked snapshot's
		// holds its resources, so it is not walked again.
		"unmoved group is trusted": {
			snap:    with(map[resource.Type]typed{resource.ClusterType: {"c1", missingEDS.items}}),
			checked: good,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var checked *cache.Snapshot
			if tc.checked != nil {
				checked = snapOf(t, tc.checked)
			}
			snap := snapOf(t, tc.snap)
			before := snap.Resources
			err := consistent(snap, checked)
			if tc.want == "" && err != nil {
				t.Fatalf("consistent() = %v, want nil", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("consistent() = %v, want an error mentioning %q", err, tc.want)
			}
			for i := range before {
				if len(snap.Resources[i].Items) != len(before[i].Items) || snap.Resources[i].Version != before[i].Version {
					t.Fatalf("consistent() modified the snapshot's type %d", i)
				}
			}
		})
	}
}
