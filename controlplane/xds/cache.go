package xds

import (
	"context"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// Cache remembers the resources built from model objects so that the next
// translation reuses those whose model object is unchanged (compared with
// the model's Equal methods) instead of building, validating and hashing
// them again. The output is identical with or without a cache.
//
// Translation reaches the cache through one seam, slots.reuse: what was
// built is kept by resource type and name, with the model object it was
// built from, and handed back when the new object is equal to that one.
//
// The model values handed to a Cache must not be modified afterwards (the
// cache keeps them to compare against). A Cache is not safe for concurrent
// use: a snapshot.Translator owns one and serialises its calls.
type Cache struct {
	// mesh is the mesh being translated, gen the number of its
	// translation: entries not used by the translation of the last mesh
	// are forgotten by Sweep.
	mesh *model.Mesh
	gen  uint64
	// flavours holds the memo of the groups of Envoy nodes and that of
	// the groups of proxyless gRPC clients, which ForGroups translates
	// concurrently.
	flavours [2]memo
	// shared is what the flavours share about the mesh's clusters (see
	// memo.shared).
	shared []sharedCluster
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{flavours: [2]memo{newMemo(), newMemo()}}
}

// ForGroup is the package-level ForGroup, reusing what the cache holds.
func (c *Cache) ForGroup(m *model.Mesh, name string) (*Resources, error) {
	c.begin(m)
	g := m.Group(name)
	if g == nil {
		return forGroup(m, name, &memo{})
	}
	return forGroup(m, name, &c.flavours[flavour(isProxyless(g))])
}

// ForGroups builds the resources of every group of m, as ForGroup does for
// each; res[i] and errs[i] are those of m.Groups[i]. Groups of Envoy nodes
// and groups of proxyless gRPC clients are translated concurrently (each
// flavour has its own memo), which on two cores takes about half the time
// of one group after the other. The output does not depend on the
// schedule.
//
// # Errors
//
// errs[i] is what ForGroup returns for the group, or ctx's error if ctx
// ended before the group was translated.
func (c *Cache) ForGroups(ctx context.Context, m *model.Mesh) (res []*Resources, errs []error) {
	res, errs = make([]*Resources, len(m.Groups)), make([]error, len(m.Groups))
	c.begin(m)
	var byFlavour [2][]int
	names := make(map[string]bool, len(m.Groups))
	for i := range m.Groups {
		f := flavour(isProxyless(&m.Groups[i]))
		byFlavour[f] = append(byFlavour[f], i)
		names[m.Groups[i].Name] = true
	}
	if len(names) != len(m.Groups) {
		// Groups sharing a name (a mesh that is not valid) may be of
		// both flavours: translate them one after the other.
		byFlavour = [2][]int{append(byFlavour[0], byFlavour[1]...)}
		slices.Sort(byFlavour[0])
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, groups := range byFlavour {
		g.Go(func() error {
			for _, i := range groups {
				if err := ctx.Err(); err != nil {
					errs[i] = err
					continue
				}
				mem := &c.flavours[flavour(isProxyless(&m.Groups[i]))]
				res[i], errs[i] = forGroup(m, m.Groups[i].Name, mem)
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through errs
	return res, errs
}

// begin starts the translation of m, unless it is the one in progress.
func (c *Cache) begin(m *model.Mesh) {
	if c.mesh == m {
		return
	}
	c.mesh = m
	c.gen++
	c.shared = zeroed(c.shared, len(m.Clusters))
	for f := range c.flavours {
		c.flavours[f].gen, c.flavours[f].shared = c.gen, c.shared
	}
}

// Sweep forgets everything the translation of the last mesh did not use;
// call it after translating every group of a mesh.
func (c *Cache) Sweep() {
	for f := range c.flavours {
		c.flavours[f].sweep()
	}
	// Nothing may keep the last meshes alive.
	clear(c.shared)
	c.mesh = nil
}

// flavour indexes the cache's memos.
func flavour(proxyless bool) int {
	if proxyless {
		return 1
	}
	return 0
}
