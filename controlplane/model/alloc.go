package model

import "strings"

// Build of a 10,000-route mesh makes hundreds of thousands of small strings
// and slices; allocated one by one they dominate its cost, mostly through
// the garbage collector marking them. The builder carves them out of a few
// large chunks instead. Everything carved belongs to the one Mesh being
// built, so a chunk lives exactly as long as the Mesh does.

// Chunk sizes: large enough that a big mesh needs few chunks, small enough
// that a tiny one wastes little.
const (
	strChunk  = 32 << 10
	slabChunk = 1024
)

// strArena hands out strings that share a few large buffers. A
// strings.Builder never rewrites bytes it has written, and one grown up
// front never moves them, so strings sliced out of it stay valid while
// later ones are appended.
type strArena struct {
	b strings.Builder
}

// concat returns the concatenation of parts. Like the + operator, it
// returns a lone non-empty part itself rather than a copy.
func (a *strArena) concat(parts ...string) string {
	n, nonEmpty, last := 0, 0, ""
	for _, p := range parts {
		if p != "" {
			n += len(p)
			nonEmpty++
			last = p
		}
	}
	if nonEmpty <= 1 {
		return last
	}
	if a.b.Cap()-a.b.Len() < n {
		a.b.Reset()
		a.b.Grow(max(strChunk, n))
	}
	start := a.b.Len()
	for _, p := range parts {
		a.b.WriteString(p)
	}
	return a.b.String()[start:]
}

// slab hands out slices of T carved from shared chunks. Each slice's
// capacity is its length, so an append to one reallocates instead of
// overwriting its neighbour.
type slab[T any] struct {
	buf []T
}

// take returns a zeroed slice of length n; never nil, like make.
func (s *slab[T]) take(n int) []T {
	if n == 0 {
		return []T{}
	}
	if cap(s.buf)-len(s.buf) < n {
		s.buf = make([]T, 0, max(slabChunk, n))
	}
	start := len(s.buf)
	s.buf = s.buf[:start+n]
	return s.buf[start : start+n : start+n]
}

// clone is slices.Clone from the slab: nil stays nil and empty stays
// empty.
func (s *slab[T]) clone(src []T) []T {
	if src == nil {
		return nil
	}
	out := s.take(len(src))
	copy(out, src)
	return out
}
