package policy

import (
	"bytes"
	"strings"
)

// A reload mostly sees a file that differs from its last version in one
// place. Rather than cutting the whole file into documents and hashing each
// to find it in the cache, the Loader keeps each file's documents in order
// and matches the unchanged ones at the start and the end by comparing
// their text in place; only the documents in between are cut and looked up.

// fileDocs is a file's documents as last loaded, in order, and a copy of
// its content then: comparing two contiguous copies runs at memory speed,
// where comparing each document with its cache key would visit as many
// scattered allocations.
type fileDocs struct {
	chunks []fileChunk
	data   []byte
	// spare and spareData are the arrays of the load before, reused for
	// the next one.
	spare     []fileChunk
	spareData []byte
	gen       uint64
}

// fileChunk is one document of a file: its text (the cache's key), its
// entry, where it starts in the file and the file line it starts on.
type fileChunk struct {
	text  string
	entry *cacheEntry
	off   int
	line  int
}

// chunks cuts data, the content of file, into documents with their cache
// entries, reusing what it can of the file's last version. misses indexes
// the returned chunks whose entries are new (not yet decoded).
func (c *docCache) chunks(file string, data []byte) (out []fileChunk, misses []int) {
	prev := c.files[file]
	var (
		old     []fileChunk
		oldData []byte
	)
	if prev != nil {
		old, oldData, out = prev.chunks, prev.data, prev.spare[:0]
	}
	if hasDirective(data) {
		c.stale = append(c.stale, old...)
		old = nil // the file is one document: nothing to match
	}
	// The documents at the start that are unchanged, each followed by a
	// document marker (or the end) as before.
	same := commonPrefix(oldData, data)
	off, k := 0, 0
	for ; k < len(old); k++ {
		end := off + len(old[k].text)
		if end > same || (end < len(data) && !markerAt(data, end)) {
			break
		}
		ch := c.reuse(old[k], 0)
		ch.off = off
		out = append(out, ch)
		off = end
	}
	// The documents at the end that are unchanged, each starting at a
	// marker (or at the start of the file), matched backwards.
	same = commonSuffix(oldData, data)
	tail, kEnd := len(data), len(old)
	for ; kEnd > k; kEnd-- {
		ch := old[kEnd-1]
		start := tail - len(ch.text)
		if len(oldData)-ch.off > same || start < off || (start > 0 && !markerAt(data, start)) {
			break
		}
		tail = start
	}
	c.stale = append(c.stale, old[k:kEnd]...)
	// The documents in between, found in the cache by their text.
	line := 1
	if k > 0 {
		line = old[k-1].line + strings.Count(old[k-1].text, "\n")
	}
	if off < tail || (len(data) == 0 && len(out) == 0) {
		at := off // documents come in order, each where the last ended
		eachDocument(data[off:tail], func(text []byte, l int) {
			e, miss := c.lookup(text)
			if miss {
				misses = append(misses, len(out))
			}
			out = append(out, fileChunk{text: e.text, entry: e, off: at, line: line + l - 1})
			at += len(text)
		})
	}
	if kEnd < len(old) {
		// Lines after the change move by as many as the change added,
		// offsets by as many bytes.
		shift := line + bytes.Count(data[off:tail], []byte("\n")) - old[kEnd].line
		moved := tail - old[kEnd].off
		for _, ch := range old[kEnd:] {
			ch = c.reuse(ch, shift)
			ch.off += moved
			out = append(out, ch)
		}
	}
	return out, misses
}

// commonPrefix is the length of the longest common prefix of a and b,
// compared a block at a time with the vectorized bytes.Equal.
func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+compareBlock <= n && bytes.Equal(a[i:i+compareBlock], b[i:i+compareBlock]); i += compareBlock {
	}
	for ; i < n && a[i] == b[i]; i++ {
	}
	return i
}

// commonSuffix is the length of the longest common suffix of a and b.
func commonSuffix(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+compareBlock <= n && bytes.Equal(a[len(a)-i-compareBlock:len(a)-i], b[len(b)-i-compareBlock:len(b)-i]); i += compareBlock {
	}
	for ; i < n && a[len(a)-1-i] == b[len(b)-1-i]; i++ {
	}
	return i
}

// compareBlock is the run of bytes compared at once: long enough for the
// vector loop, short enough that the last block wastes little.
const compareBlock = 256

// reuse marks ch's entry used by this load and returns ch moved down by
// shift lines.
func (c *docCache) reuse(ch fileChunk, shift int) fileChunk {
	if ch.entry.gen != c.gen {
		ch.entry.gen = c.gen
		c.used++
	}
	ch.line += shift
	return ch
}

// keep records out and a copy of data as the documents of file for the
// next load.
func (c *docCache) keep(file string, data []byte, out []fileChunk) {
	prev := c.files[file]
	var (
		spare     []fileChunk
		spareData []byte
		keepData  []byte
	)
	if prev != nil {
		spare, spareData = prev.chunks, prev.data
		clear(spare) // hold no entries the cache may drop
		keepData = prev.spareData
	}
	c.files[file] = &fileDocs{chunks: out, data: append(keepData[:0], data...), spare: spare[:0], spareData: spareData, gen: c.gen}
}

// markerAt reports whether a document marker line starts at data[i], which
// follows a newline.
func markerAt(data []byte, i int) bool {
	if i == 0 || data[i-1] != '\n' || !bytes.HasPrefix(data[i:], []byte("---")) {
		return false
	}
	rest := data[i+3:]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n' || rest[0] == '\r'
}

// hasDirective reports whether a line of data starts with '%' (a YAML
// directive). '%' is rare in policies, so it is searched for alone.
func hasDirective(data []byte) bool {
	for i := 0; i < len(data); {
		j := bytes.IndexByte(data[i:], '%')
		if j < 0 {
			return false
		}
		if i+j == 0 || data[i+j-1] == '\n' {
			return true
		}
		i += j + 1
	}
	return false
}
