package proxywasm

// streamTable maps stream context ids to their contexts with open
// addressing and linear probing. Every stream costs an insert, a delete
// and a lookup per callback; in Go's wasm backend a built-in map operation
// (generic hashing through function values, the swiss-table probe) costs
// several times this table's few integer operations, and the dispatcher
// runs them on every request.
type streamTable struct {
	slots []streamSlot // length a power of two; id 0 marks a free slot
	n     int
	// last is the slot of the most recent lookup: callbacks of one stream
	// tend to come one after another.
	last int
}

type streamSlot struct {
	id       uint32
	root     uint32 // the plugin (root) context the stream belongs to
	http     HTTPContext
	recycler HTTPContextRecycler // the plugin's, nil if it recycles none
}

const minStreamSlots = 16

func (t *streamTable) index(id uint32) int {
	// Fibonacci hashing: the host numbers contexts consecutively, and the
	// multiply spreads neighbours over the table.
	return int((id * 2654435769) & uint32(len(t.slots)-1))
}

// get returns the slot of id, or nil.
func (t *streamTable) get(id uint32) *streamSlot {
	if id == 0 || len(t.slots) == 0 {
		return nil
	}
	if s := &t.slots[t.last]; s.id == id {
		return s
	}
	mask := len(t.slots) - 1
	for i := t.index(id); ; i = (i + 1) & mask {
		s := &t.slots[i]
		switch s.id {
		case id:
			t.last = i
			return s
		case 0:
			return nil
		}
	}
}

// put adds or replaces the stream id (never 0).
func (t *streamTable) put(id, root uint32, h HTTPContext, r HTTPContextRecycler) {
	if (t.n+1)*2 > len(t.slots) {
		t.grow()
	}
	mask := len(t.slots) - 1
	for i := t.index(id); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.id == id || s.id == 0 {
			if s.id == 0 {
				t.n++
			}
			*s = streamSlot{id: id, root: root, http: h, recycler: r}
			t.last = i
			return
		}
	}
}

// del removes id and returns what it held, shifting the slots after it
// back so that every lookup still finds its entry before the first free
// slot.
func (t *streamTable) del(id uint32) (streamSlot, bool) {
	if id == 0 || len(t.slots) == 0 {
		return streamSlot{}, false
	}
	mask := len(t.slots) - 1
	i := t.index(id)
	for t.slots[i].id != id {
		if t.slots[i].id == 0 {
			return streamSlot{}, false
		}
		i = (i + 1) & mask
	}
	removed := t.slots[i]
	for j := (i + 1) & mask; t.slots[j].id != 0; j = (j + 1) & mask {
		// The entry at j may fill the hole at i unless its home slot lies
		// cyclically in (i, j].
		home := t.index(t.slots[j].id)
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = streamSlot{}
	t.n--
	return removed, true
}

func (t *streamTable) grow() {
	old := t.slots
	t.slots = make([]streamSlot, max(minStreamSlots, 2*len(old)))
	t.n, t.last = 0, 0
	for _, s := range old {
		if s.id != 0 {
			t.put(s.id, s.root, s.http, s.recycler)
		}
	}
}

// len is the number of streams held.
func (t *streamTable) len() int { return t.n }
