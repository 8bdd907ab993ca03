// Package snapshot turns a model.Mesh into one consistent go-control-plane
// snapshot per node group, versioned by content, with make-before-break
// changes:
//
//   - a group's version is a hash of its resources' content versions, so an
//     unchanged mesh yields the same versions and the previous snapshot
//     objects (no push);
//   - changes are make-before-break, in up to three steps per group: a
//     warming snapshot (Set.Warming) brings new clusters, endpoints and
//     secrets under the old listeners and routes; the new version then
//     switches listeners and routes while still carrying the clusters it no
//     longer uses; those are dropped one version later (the next Translate,
//     or Settle). The server moves to the next step once the group's nodes
//     have ACKed the previous one. (With an ADS cache created with
//     ads=true, go-control-plane also answers clusters and endpoints before
//     listeners and routes within one snapshot.)
//   - every snapshot carries per-resource versions for delta xDS, so a
//     weight change re-sends only the route configuration that changed.
//
// Every snapshot is checked with Consistent() before it is returned; the
// walk leaves out the clusters and endpoints (or listeners and routes) that
// are, by version, the very ones of the previous, checked snapshot.
package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/xds"
	"github.com/maestro-ml/maestro/internal/parallel"
)

// Set is the snapshots of every node group of one mesh.
type Set struct {
	// Version identifies the whole set (a hash of the group versions).
	Version string
	// Snapshots by group name; each is Consistent.
	Snapshots map[string]*cache.Snapshot
	// Versions by group name: a hash of the group's per-type versions.
	Versions map[string]string
	// Changed lists, sorted, the groups whose version differs from the
	// previous set's (all groups for the first set). Groups that
	// disappeared are in Removed.
	Changed []string
	Removed []string
	// Resources holds the group's resources and per-resource versions, as
	// built (without retired clusters).
	Resources map[string]*xds.Resources
	// Warming holds, for the groups whose new version adds clusters,
	// endpoints or secrets, the first step of the change: the previous
	// listeners, routes and filter configs with the new clusters, endpoints
	// and secrets (old ones kept). It is Consistent. Setting it first, and
	// the group's Snapshots entry once the group's nodes have ACKed it,
	// guarantees a route never names a cluster its client does not have
	// yet, whatever order the cache answers the types in.
	Warming map[string]*cache.Snapshot
}

// Translate builds a Set for m with no history: no retired clusters, every
// group counted as changed. It is what `maestro validate --output` and the
// tests use; a long-running server uses a Translator.
//
// # Errors
//
// A model that fails Validate, a resource failing ValidateAll, or a snapshot
// failing Consistent; the error names the group and resource.
func Translate(m *model.Mesh) (*Set, error) {
	return NewTranslator().Translate(m)
}

// Translator builds successive Sets, remembering the last one for
// make-before-break and to keep versions stable. Safe for concurrent use
// (calls are serialised).
type Translator struct {
	mu sync.Mutex
	// prev is the last set built; retired the clusters each group dropped
	// in it, which Settle removes.
	prev    *Set
	retired map[string]retired
	// cache keeps the resources of unchanged model objects between calls.
	cache *xds.Cache
	// names holds, by group, the names of each type's resources (in
	// xds.Types() order) in prev's snapshot, so that a type where few
	// resources changed is indexed by patching the previous index.
	names map[string][][]string
}

// retired is what a group's last version kept only for make-before-break:
// resources and their versions, by type.
type retired struct {
	items    map[resource.Type][]types.Resource
	versions map[resource.Type][]string
}

// NewTranslator returns a Translator with no history.
func NewTranslator() *Translator { return &Translator{cache: xds.NewCache()} }

// Translate builds the snapshots of m, reusing the resources of model
// objects unchanged since the previous call (m must not be modified after
// the call). Clusters (and their endpoints and
// secrets) that a group used in the previous set but not in m are kept in
// this set and dropped by the next Translate or by Settle.
//
// # Errors
//
// As the package-level Translate. On error the Translator's history is
// unchanged, so the last good set remains the base of the next one.
func (t *Translator) Translate(m *model.Mesh) (*Set, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	set := newSet(len(m.Groups))
	nextRetired := map[string]retired{}
	nextNames := make(map[string][][]string, len(m.Groups))
	// Groups are independent: build them, then assemble and check their
	// snapshots (which only read the Translator's history), concurrently;
	// the results are gathered in group order, so the set and any error
	// do not depend on the schedule.
	ctx := context.Background()
	res, errs := t.cache.ForGroups(ctx, m)
	outs := make([]groupResult, len(m.Groups))
	// The calls report through errs and outs, never by failing.
	_ = parallel.Each(ctx, len(m.Groups), parallel.Parts(len(m.Groups), 2), func(ctx context.Context, i int) error {
		if errs[i] != nil {
			return nil
		}
		if err := ctx.Err(); err != nil {
			errs[i] = err
			return nil
		}
		outs[i] = t.group(m.Groups[i].Name, res[i])
		return nil
	})
	for i := range m.Groups {
		name, out := m.Groups[i].Name, &outs[i]
		if errs[i] != nil {
			continue
		}
		set.Resources[name] = res[i]
		if len(out.old.items) > 0 {
			nextRetired[name] = out.old
		}
		if out.snap == nil {
			errs[i] = out.err
			continue
		}
		set.Snapshots[name], set.Versions[name] = out.snap, out.version
		nextNames[name] = out.names
		if out.err != nil {
			errs[i] = out.err
			continue
		}
		if out.warm != nil {
			set.Warming[name] = out.warm
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	t.cache.Sweep()
	t.finish(set)
	t.prev, t.retired, t.names = set, nextRetired, nextNames
	return set, nil
}

// groupResult is what the Translator makes of one group's resources.
type groupResult struct {
	old     retired
	snap    *cache.Snapshot
	version string
	names   [][]string
	warm    *cache.Snapshot
	err     error
}

// group assembles and checks the snapshots of one group from its
// resources. It only reads the Translator's history, so groups may run
// concurrently. A snapshot error leaves snap nil; a warming error leaves
// snap set and warm nil, as the serial assembly did.
func (t *Translator) group(name string, res *xds.Resources) groupResult {
	out := groupResult{old: t.retiredFrom(name, res)}
	out.snap, out.version, out.names, out.err = t.snapshot(name, res, out.old)
	if out.err != nil {
		out.snap = nil
		return out
	}
	out.warm, out.err = t.warming(name, out.snap)
	return out
}

// Settle returns the last set without the clusters it kept for
// make-before-break (new versions for the groups that had any), and makes it
// the base of the next Translate. It returns nil if nothing was retired.
// The server calls it once clients have had time to apply the last set (for
// example when every connected node has ACKed it).
//
// # Errors
//
// A snapshot failing Consistent.
func (t *Translator) Settle() (*Set, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.prev == nil || len(t.retired) == 0 {
		return nil, nil
	}
	set := newSet(len(t.prev.Snapshots))
	set.Resources = t.prev.Resources
	nextNames := make(map[string][][]string, len(t.prev.Resources))
	for name, res := range t.prev.Resources {
		if _, ok := t.retired[name]; !ok {
			set.Snapshots[name], set.Versions[name] = t.prev.Snapshots[name], t.prev.Versions[name]
			nextNames[name] = t.names[name]
			continue
		}
		snap, version, names, err := t.snapshot(name, res, retired{})
		if err != nil {
			return nil, err
		}
		set.Snapshots[name], set.Versions[name] = snap, version
		nextNames[name] = names
	}
	t.finish(set)
	t.prev, t.retired, t.names = set, nil, nextNames
	return set, nil
}

// retiredFrom returns the clusters (with endpoints and secrets) the group
// had in the previous set, not retired there, and no longer has in res.
// Both lists are sorted by name, so one merge pass finds them.
func (t *Translator) retiredFrom(group string, res *xds.Resources) retired {
	if t.prev == nil {
		return retired{}
	}
	prevRes, ok := t.prev.Resources[group]
	if !ok {
		return retired{}
	}
	out := retired{items: map[resource.Type][]types.Resource{}, versions: map[resource.Type][]string{}}
	for _, typ := range []resource.Type{resource.ClusterType, resource.EndpointType, resource.SecretType} {
		before, after := prevRes.Items[typ], res.Items[typ]
		// An unchanged type (the cache handed back the very same
		// resources) retires nothing: spare the walk by name.
		if sameResources(before, after) {
			continue
		}
		j := 0
		for i, r := range before {
			// The same resource at the merge position is kept; only
			// the others need their names compared.
			if j < len(after) && after[j] == r {
				j++
				continue
			}
			name := cache.GetResourceName(r)
			for j < len(after) && cache.GetResourceName(after[j]) < name {
				j++
			}
			if j < len(after) && cache.GetResourceName(after[j]) == name {
				continue
			}
			// A cluster that became a DNS cluster keeps its name but
			// needs no EDS resource any more: keeping the old one would
			// leave an endpoint resource no EDS cluster names.
			if typ == resource.EndpointType && hasName(res.Items[resource.ClusterType], name) {
				continue
			}
			out.items[typ] = append(out.items[typ], r)
			out.versions[typ] = append(out.versions[typ], prevRes.Versions[typ][i])
		}
	}
	if len(out.items) == 0 {
		return retired{}
	}
	return out
}

// sameResources reports whether a and b hold the very same resource objects
// in the same order. The cache hands back the resource it built before for
// an unchanged model object, so on a small change most types of a group
// compare equal here, by pointer, without touching names or contents.
func sameResources(a, b []types.Resource) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// hasName reports whether items, sorted by name, holds one named name.
func hasName(items []types.Resource, name string) bool {
	_, ok := slices.BinarySearchFunc(items, name, func(r types.Resource, n string) int {
		return strings.Compare(cache.GetResourceName(r), n)
	})
	return ok
}

// snapshot assembles and checks one group's snapshot, and returns the
// names of its resources by type. Each resource type gets its own version
// (a hash of its resources' names and versions), so a state-of-the-world
// client is only re-sent the types that changed; a type whose version is
// unchanged reuses the previous snapshot's index and version map, and an
// unchanged group reuses the whole previous snapshot.
func (t *Translator) snapshot(group string, res *xds.Resources, old retired) (*cache.Snapshot, string, [][]string, error) {
	var prev *cache.Snapshot
	var prevRes *xds.Resources
	var prevOld retired
	var prevNames [][]string
	if t.prev != nil {
		prev, prevRes, prevOld = t.prev.Snapshots[group], t.prev.Resources[group], t.retired[group]
		prevNames = t.names[group]
	}
	if prev == nil || prevRes == nil || len(prevNames) != len(xds.Types()) {
		prev, prevRes, prevNames = nil, nil, nil
	}
	snap := &cache.Snapshot{VersionMap: make(map[string]map[string]string, len(xds.Types()))}
	typeVersions := make([]string, len(xds.Types()))
	names := make([][]string, len(xds.Types()))
	for i, typ := range xds.Types() {
		idx := cache.GetResponseType(typ)
		// The previous snapshot's type was made of prevRes's resources
		// plus prevOld's; when both are the very same as now, so are its
		// version, index and version map: skip hashing and indexing
		// every resource of the type again.
		if prev != nil && len(old.items[typ]) == 0 && len(prevOld.items[typ]) == 0 &&
			sameResources(res.Items[typ], prevRes.Items[typ]) && slices.Equal(res.Versions[typ], prevRes.Versions[typ]) {
			typeVersions[i], names[i] = prev.GetVersion(typ), prevNames[i]
			snap.Resources[idx] = prev.Resources[idx]
			snap.VersionMap[typ] = prev.VersionMap[typ]
			continue
		}
		cur := typeItems{
			items:    append(slices.Clip(res.Items[typ]), old.items[typ]...),
			versions: append(slices.Clip(res.Versions[typ]), old.versions[typ]...),
		}
		var last typeItems
		if prev != nil {
			last = typeItems{
				items:    append(slices.Clip(prevRes.Items[typ]), prevOld.items[typ]...),
				versions: append(slices.Clip(prevRes.Versions[typ]), prevOld.versions[typ]...),
				names:    prevNames[i],
			}
		}
		changed, patchable := cur.nameAfter(&last)
		tv := typeVersion(typ, cur.names, cur.versions)
		typeVersions[i], names[i] = tv, cur.names
		if prev != nil && prev.GetVersion(typ) == tv {
			snap.Resources[idx] = prev.Resources[idx]
			snap.VersionMap[typ] = prev.VersionMap[typ]
			continue
		}
		if patchable && prev != nil {
			snap.Resources[idx], snap.VersionMap[typ] = cur.patch(tv, changed, prev.Resources[idx], prev.VersionMap[typ])
			if snap.VersionMap[typ] != nil {
				continue
			}
		}
		snap.Resources[idx], snap.VersionMap[typ] = cur.index(tv)
	}
	version := groupVersion(typeVersions)
	if prev != nil && t.prev.Versions[group] == version {
		return prev, version, names, nil
	}
	if err := consistent(snap, prev); err != nil {
		return nil, "", nil, fmt.Errorf("group %q: inconsistent snapshot: %w", group, err)
	}
	return snap, version, names, nil
}

// warmingTypes are what a warming snapshot takes from the new version; it
// keeps the other types of the previous one. Each type keeps its own
// version, so a warming snapshot needs no version of its own.
func warmingTypes() [3]resource.Type {
	return [...]resource.Type{resource.SecretType, resource.ClusterType, resource.EndpointType}
}

// warming returns the first step of a change to group (see Set.Warming), or
// nil when next adds no cluster, endpoint or secret to the previous
// version.
func (t *Translator) warming(group string, next *cache.Snapshot) (*cache.Snapshot, error) {
	if t.prev == nil {
		return nil, nil
	}
	prev := t.prev.Snapshots[group]
	if prev == nil || prev == next || !adds(prev, next) {
		return nil, nil
	}
	warm := &cache.Snapshot{VersionMap: make(map[string]map[string]string, len(prev.VersionMap))}
	for typ, vm := range prev.VersionMap {
		warm.VersionMap[typ] = vm
	}
	for i := range warm.Resources {
		warm.Resources[i] = prev.Resources[i]
	}
	for _, typ := range warmingTypes() {
		idx := cache.GetResponseType(typ)
		warm.Resources[idx] = next.Resources[idx]
		warm.VersionMap[typ] = next.VersionMap[typ]
	}
	if err := consistent(warm, prev); err != nil {
		return nil, fmt.Errorf("group %q: inconsistent warming snapshot: %w", group, err)
	}
	return warm, nil
}

// adds reports whether next has a cluster, endpoint or secret name that
// prev lacks. Types whose version did not move add nothing.
func adds(prev, next *cache.Snapshot) bool {
	for _, typ := range warmingTypes() {
		if prev.GetVersion(typ) == next.GetVersion(typ) {
			continue
		}
		before := prev.VersionMap[typ]
		for name := range next.VersionMap[typ] {
			if _, ok := before[name]; !ok {
				return true
			}
		}
	}
	return false
}

func newSet(n int) *Set {
	return &Set{
		Warming:   map[string]*cache.Snapshot{},
		Snapshots: make(map[string]*cache.Snapshot, n),
		Versions:  make(map[string]string, n),
		Resources: make(map[string]*xds.Resources, n),
	}
}

// finish fills the set's version and its Changed and Removed lists against
// the previous set.
func (t *Translator) finish(set *Set) {
	names := make([]string, 0, len(set.Snapshots))
	for name := range set.Snapshots {
		names = append(names, name)
	}
	slices.Sort(names)
	h := sha256.New()
	for _, name := range names {
		v := set.Versions[name]
		fmt.Fprintf(h, "%s=%s\n", name, v)
		if t.prev == nil || t.prev.Versions[name] != v {
			set.Changed = append(set.Changed, name)
		}
	}
	if t.prev != nil {
		for name := range t.prev.Snapshots {
			if _, ok := set.Snapshots[name]; !ok {
				set.Removed = append(set.Removed, name)
			}
		}
		slices.Sort(set.Removed)
	}
	set.Version = hex.EncodeToString(h.Sum(nil))[:32]
}

// typeVersion hashes the names and versions of one type's resources, in
// their (deterministic) order.
func typeVersion(typ resource.Type, names, versions []string) string {
	h := xxhash.New()
	_, _ = h.WriteString(typ)
	for i, name := range names {
		_, _ = h.WriteString("\x00")
		_, _ = h.WriteString(name)
		_, _ = h.WriteString("\x00")
		_, _ = h.WriteString(versions[i])
	}
	return strconv.FormatUint(h.Sum64(), 16)
}

// groupVersion hashes the per-type versions in xds.Types() order.
func groupVersion(typeVersions []string) string {
	h := sha256.New()
	for _, v := range typeVersions {
		_, _ = h.Write([]byte(v + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Changes lists, by type, the names of resources added, changed or removed
// between two snapshots of a group (by per-resource version): what a delta
// xDS client is sent. A nil prev counts every resource of next.
func Changes(prev, next *cache.Snapshot) map[resource.Type][]string {
	out := map[resource.Type][]string{}
	for _, typ := range xds.Types() {
		var before map[string]string
		if prev != nil {
			if prev.GetVersion(typ) == next.GetVersion(typ) {
				continue
			}
			before = prev.VersionMap[typ]
		}
		after := next.VersionMap[typ]
		var names []string
		for n, v := range after {
			if old, ok := before[n]; !ok || old != v {
				names = append(names, n)
			}
		}
		for n := range before {
			if _, ok := after[n]; !ok {
				names = append(names, n)
			}
		}
		if len(names) > 0 {
			slices.Sort(names)
			out[typ] = names
		}
	}
	return out
}
