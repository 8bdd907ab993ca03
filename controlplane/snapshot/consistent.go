package snapshot

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// referencePairs are the groups of types Consistent() relates: clusters
// name the endpoints they need, listeners (and scoped routes) the route
// configurations. Each group is checked independently of the others.
func referencePairs() [2][]resource.Type {
	return [2][]resource.Type{
		{resource.ClusterType, resource.EndpointType},
		{resource.ListenerType, resource.ScopedRouteType, resource.RouteType},
	}
}

// consistent runs go-control-plane's Consistent() on snap. A reference
// group whose every type has the same version in checked, a snapshot that
// already passed this check, holds the very resources checked there (a
// type's version hashes its resource names and contents), so it is left
// out of the walk: on a weight change at 10,000 routes that spares walking
// 20,000 clusters per group, while the types that moved are still checked
// by Consistent() itself. With a nil checked, snap is checked whole.
func consistent(snap, checked *cache.Snapshot) error {
	if checked == nil {
		return snap.Consistent()
	}
	view := &cache.Snapshot{Resources: snap.Resources}
	for _, group := range referencePairs() {
		same := true
		for _, typ := range group {
			if snap.GetVersion(typ) != checked.GetVersion(typ) {
				same = false
				break
			}
		}
		if !same {
			continue
		}
		for _, typ := range group {
			if idx := cache.GetResponseType(typ); idx != types.UnknownType {
				view.Resources[idx] = cache.Resources{}
			}
		}
	}
	return view.Consistent()
}
