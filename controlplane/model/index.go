package model

// sortedIndex finds items by name in a slice sorted by name. Build and
// Validate look up tens of thousands of names in a large mesh, nearly
// always near the previous hit (a gateway lists its routes in order, each
// route names its own service's versions). Looking next to the last hit
// first costs a few comparisons of memory already in cache, where a map
// lookup misses the cache and the map itself has to be built first.
// A name not found by binary search may still be there in a slice that is
// not sorted (a hand-made policy or Mesh): a map answers for such misses.
type sortedIndex[T any] struct {
	items  []T
	name   func(*T) string
	last   int
	byName map[string]int
}

func newSortedIndex[T any](items []T, name func(*T) string) sortedIndex[T] {
	return sortedIndex[T]{items: items, name: name}
}

// find returns the index of the item named name, or -1.
func (x *sortedIndex[T]) find(name string) int {
	// The last hit (a route's other version) and the next (the next
	// route's service) first.
	for _, j := range [...]int{x.last, x.last + 1, x.last - 1, x.last + 2} {
		if j >= 0 && j < len(x.items) && x.name(&x.items[j]) == name {
			x.last = j
			return j
		}
	}
	lo, hi := 0, len(x.items)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if x.name(&x.items[mid]) < name {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(x.items) && x.name(&x.items[lo]) == name {
		x.last = lo
		return lo
	}
	if x.byName == nil {
		x.byName = make(map[string]int, len(x.items))
		for i := range x.items {
			if _, dup := x.byName[x.name(&x.items[i])]; !dup {
				x.byName[x.name(&x.items[i])] = i
			}
		}
	}
	if i, ok := x.byName[name]; ok {
		return i
	}
	return -1
}
