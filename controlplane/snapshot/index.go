package snapshot

import (
	"maps"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// typeItems is one type's resources in a group's snapshot, in order, with
// their versions and names.
type typeItems struct {
	items    []types.Resource
	versions []string
	names    []string
}

// nameAfter fills ti.names, taking a resource's name from last where last
// holds the very same resource at the same position (the cache hands back
// the resources of unchanged model objects), so that only new resources
// are asked for their names. It returns the positions whose resource or
// version differs from last's, and whether ti is last with only those
// positions changed in place (same length, same names in the same order):
// then patching last's index at those positions gives ti's index.
func (ti *typeItems) nameAfter(last *typeItems) (changed []int, patchable bool) {
	ti.names = make([]string, len(ti.items))
	patchable = len(last.names) == len(ti.items) && len(last.items) == len(ti.items) && len(last.versions) == len(ti.items)
	for k, r := range ti.items {
		if patchable && r == last.items[k] {
			ti.names[k] = last.names[k]
			if ti.versions[k] != last.versions[k] {
				changed = append(changed, k)
			}
			continue
		}
		ti.names[k] = cache.GetResourceName(r)
		if patchable {
			if ti.names[k] != last.names[k] {
				patchable = false
				continue
			}
			changed = append(changed, k)
		}
	}
	return changed, patchable
}

// index builds the snapshot index and version map of ti, as
// cache.NewResources and a walk over the names would.
func (ti *typeItems) index(version string) (cache.Resources, map[string]string) {
	byName := make(map[string]types.ResourceWithTTL, len(ti.items))
	vm := make(map[string]string, len(ti.items))
	for k, r := range ti.items {
		byName[ti.names[k]] = types.ResourceWithTTL{Resource: r}
		vm[ti.names[k]] = ti.versions[k]
	}
	return cache.Resources{Version: version, Items: byName}, vm
}

// patch builds the index and version map of ti from last's (both left
// untouched: other snapshots share them) by replacing the changed
// positions. It returns a nil version map if last's index does not have
// one entry per resource (a name was repeated), which patching could not
// reproduce.
func (ti *typeItems) patch(version string, changed []int, last cache.Resources, lastVM map[string]string) (cache.Resources, map[string]string) {
	if len(ti.items) == 0 || len(last.Items) != len(ti.items) || len(lastVM) != len(ti.items) {
		return cache.Resources{}, nil
	}
	byName, vm := maps.Clone(last.Items), maps.Clone(lastVM)
	for _, k := range changed {
		byName[ti.names[k]] = types.ResourceWithTTL{Resource: ti.items[k]}
		vm[ti.names[k]] = ti.versions[k]
	}
	return cache.Resources{Version: version, Items: byName}, vm
}
