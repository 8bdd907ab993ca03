package repository

import (
	"cmp"
	"slices"
)

// Resident is a loaded model version and the memory the cache charges it:
// its runtime's MemoryBytes estimate, the same figure the memory budget
// counts.
type Resident struct {
	Model   string
	Version string
	Bytes   int64
}

// Resident lists the loaded model versions, sorted by model and version.
func (r *Repository) Resident() []Resident {
	var out []Resident
	for _, m := range *r.models.Load() {
		for _, v := range m.versions {
			if l := v.ready.Load(); l != nil {
				out = append(out, Resident{Model: l.Name, Version: l.Version, Bytes: l.bytes})
			}
		}
	}
	slices.SortFunc(out, func(a, b Resident) int {
		return cmp.Or(cmp.Compare(a.Model, b.Model), cmp.Compare(a.Version, b.Version))
	})
	return out
}
