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

// fileDocs is a file's documents as last loaded, in order.
type fileDocs struct {
	chunks []fileChunk
	// spare is the array of the load before, reused for the next one.
	spare []fileChunk
	gen   uint64
}

// fileChunk is one document of a file: its text (the cache's key), its
// entry and the file line it starts on.
type fileChunk struct {
	text  string
	entry *cacheEntry
	line  int
}

// chunks cuts data, the content of file, into documents with their cache
// entries, reusing what it can of the file's last version. misses indexes
// the returned chunks whose entries are new (not yet decoded).
func (c *docCache) chunks(file string, data []byte) (out []fileChunk, misses []int) {
	prev := c.files[file]
	var old []fileChunk
	if prev != nil {
		old, out = prev.chunks, prev.spare[:0]
	}
	if hasDirective(data) {
		old = nil // the file is one document: nothing to match
	}
	// The documents at the start that are unchanged, each followed by a
	// document marker (or the end) as before.
	off, k := 0, 0
	for ; k < len(old); k++ {
		ch := old[k]
		end := off + len(ch.text)
		if end > len(data) || string(data[off:end]) != ch.text || (end < len(data) && !markerAt(data, end)) {
			break
		}
		out = append(out, c.reuse(ch, 0))
		off = end
	}
	// The documents at the end that are unchanged, each starting at a
	// marker (or at the start of the file), matched backwards.
	tail, kEnd := len(data), len(old)
	for ; kEnd > k; kEnd-- {
		ch := old[kEnd-1]
		start := tail - len(ch.text)
		if start < off || string(data[start:tail]) != ch.text || (start > 0 && !markerAt(data, start)) {
			break
		}
		tail = start
	}
	// The documents in between, found in the cache by their text.
	line := 1
	if k > 0 {
		line = old[k-1].line + strings.Count(old[k-1].text, "\n")
	}
	if off < tail || (len(data) == 0 && len(out) == 0) {
		eachDocument(data[off:tail], func(text []byte, l int) {
			e, miss := c.lookup(text)
			if miss {
				misses = append(misses, len(out))
			}
			out = append(out, fileChunk{text: e.text, entry: e, line: line + l - 1})
		})
	}
	if kEnd < len(old) {
		// Lines after the change move by as many as the change added.
		shift := line + bytes.Count(data[off:tail], []byte("\n")) - old[kEnd].line
		for _, ch := range old[kEnd:] {
			out = append(out, c.reuse(ch, shift))
		}
	}
	return out, misses
}

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

// keep records out as the documents of file for the next load.
func (c *docCache) keep(file string, out []fileChunk) {
	prev := c.files[file]
	var spare []fileChunk
	if prev != nil {
		spare = prev.chunks
		clear(spare) // hold no entries the cache may drop
	}
	c.files[file] = &fileDocs{chunks: out, spare: spare[:0], gen: c.gen}
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
