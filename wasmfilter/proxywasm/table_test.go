package proxywasm

import (
	"math/rand/v2"
	"testing"
)

type idStream struct {
	DefaultHTTPContext
	id uint32
}

// TestStreamTableMatchesMap runs random inserts, lookups and deletes
// against a built-in map, with ids dense (as the host numbers contexts)
// and sparse, so that deletes shift clusters that wrap around the table.
func TestStreamTableMatchesMap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ids   func(r *rand.Rand, next uint32) uint32
		steps int
	}{
		{"consecutive", func(_ *rand.Rand, next uint32) uint32 { return next }, 20000},
		{"sparse", func(r *rand.Rand, _ uint32) uint32 { return 1 + r.Uint32N(1<<20) }, 20000},
		{"colliding", func(r *rand.Rand, _ uint32) uint32 { return 1 + 64*r.Uint32N(300) }, 20000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var tab streamTable
			want := map[uint32]uint32{}
			var live []uint32
			next := uint32(2)
			for step := range tc.steps {
				switch op := r.IntN(10); {
				case op < 5 || len(live) == 0:
					id := tc.ids(r, next)
					next++
					if _, ok := want[id]; !ok {
						live = append(live, id)
					}
					want[id] = id + 1
					tab.put(id, id+1, idStream{id: id}, nil)
				case op < 8:
					k := r.IntN(len(live))
					id := live[k]
					live[k] = live[len(live)-1]
					live = live[:len(live)-1]
					delete(want, id)
					if removed, ok := tab.del(id); !ok || removed.http.(idStream).id != id {
						t.Fatalf("step %d: del(%d) found nothing", step, id)
					}
				default:
					id := tc.ids(r, next)
					s := tab.get(id)
					root, ok := want[id]
					if ok != (s != nil) || ok && (s.root != root || s.http.(idStream).id != id) {
						t.Fatalf("step %d: get(%d) = %+v, want present %v root %d", step, id, s, ok, root)
					}
				}
				if tab.len() != len(want) {
					t.Fatalf("step %d: len %d, want %d", step, tab.len(), len(want))
				}
			}
			for id, root := range want {
				if s := tab.get(id); s == nil || s.root != root {
					t.Fatalf("get(%d) = %+v after the run, want root %d", id, s, root)
				}
			}
			if _, ok := tab.del(0); tab.get(0) != nil || ok {
				t.Fatal("id 0 must never be found")
			}
		})
	}
}
