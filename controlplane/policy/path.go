package policy

import "strconv"

// fieldPath is a field path ("spec.rules[1].split[0]") kept in parts and
// formatted only when a problem is reported: validation walks every list
// element of a 10,000-route mesh, and building each element's path string
// up front was most of its allocation.
type fieldPath struct {
	segs [4]pathSeg
	n    int
}

// pathSeg is one dotted name, with an index when it is a list element.
type pathSeg struct {
	name string
	idx  int // -1: not an element
}

// pathOf is the path of the field named name (which may contain dots).
func pathOf(name string) fieldPath {
	var p fieldPath
	p.segs[0] = pathSeg{name: name, idx: -1}
	p.n = 1
	return p
}

// elem is the path of element i of field.
func elem(field string, i int) fieldPath { return pathOf(field).at(i) }

// at is element i of the list at p.
func (p fieldPath) at(i int) fieldPath {
	p.segs[p.n-1].idx = i
	return p
}

// dot is the field name below p. Paths are at most four names deep (the
// policy's deepest list is nested twice); deeper ones would be a bug here.
func (p fieldPath) dot(name string) fieldPath {
	p.segs[p.n] = pathSeg{name: name, idx: -1}
	p.n++
	return p
}

// String formats the path as the errors show it.
func (p fieldPath) String() string {
	size := 0
	for _, s := range p.segs[:p.n] {
		size += len(s.name) + 1
		if s.idx >= 0 {
			size += 2 + 3
		}
	}
	b := make([]byte, 0, size)
	for i, s := range p.segs[:p.n] {
		if i > 0 {
			b = append(b, '.')
		}
		b = append(b, s.name...)
		if s.idx >= 0 {
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(s.idx), 10)
			b = append(b, ']')
		}
	}
	return string(b)
}
