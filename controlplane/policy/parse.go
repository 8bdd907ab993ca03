package policy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/maestro-ml/maestro/internal/parallel"
)

// Loader loads policies like the package-level Load and Parse, but keeps
// every decoded document keyed by its text: a reload re-parses only the
// documents that changed, which in a mesh of 10,000 routes is most of the
// cost of a change. The Meshes it returns are read-only for their users:
// successive Meshes share the parts of unchanged documents that the package
// never writes after decoding (clone.go), each with its own document
// headers (positions) and copies of what it filled in itself. The zero
// Loader is ready; it is safe for concurrent use.
type Loader struct {
	mu    sync.Mutex
	cache docCache
}

// docCache holds decoded documents by their text. Keying by the text itself
// rather than by a SHA-256 of it costs a fast string hash where the digest
// cost a cryptographic one; the keys hold a copy of the policy's text. Most
// documents of a reload are not even looked up: they are matched in place
// against the file's last version (reuse.go).
type docCache struct {
	byText map[string]*cacheEntry
	// gen numbers loads; an entry not used by the last load is dropped,
	// so documents deleted from the policy do not stay cached.
	gen  uint64
	used int
	// files is each file's documents as last loaded (reuse.go).
	files map[string]*fileDocs
	// stale is the documents of the last versions this load did not
	// match in place: their entries may no longer be used.
	stale []fileChunk
	// index is the last Mesh's name indexes.
	index meshIndex
	// once is set for the package-level Load and Parse, whose Loader sees
	// one load: it keeps no copy of the files for a next one.
	once bool
}

// cacheEntry is the documents decoded from one text, with their own
// defaults applied, positions relative to the text and no file name.
type cacheEntry struct {
	text string // the key
	docs []decoded
	gen  uint64
}

func (l *Loader) begin() *docCache {
	c := &l.cache
	if c.byText == nil {
		c.byText = map[string]*cacheEntry{}
		c.files = map[string]*fileDocs{}
	}
	c.gen++
	c.used = 0
	return c
}

// end drops the entries and files this load did not use. The entries that
// may have gone out of use are known (the documents of the last versions
// that were not matched in place, and of files not loaded now), so the
// cache is swept whole only if some were missed, as after a failed load.
func (l *Loader) end(c *docCache) {
	for name, f := range c.files {
		if f.gen != c.gen {
			c.stale = append(c.stale, f.chunks...)
			delete(c.files, name)
		}
	}
	for _, ch := range c.stale {
		if e, ok := c.byText[ch.text]; ok && e == ch.entry && e.gen != c.gen {
			delete(c.byText, ch.text)
		}
	}
	clear(c.stale)
	c.stale = c.stale[:0]
	if c.used == len(c.byText) {
		return
	}
	for k, e := range c.byText {
		if e.gen != c.gen {
			delete(c.byText, k)
		}
	}
}

// lookup returns the entry for text, creating an empty one (miss true) when
// the text is new.
func (c *docCache) lookup(text []byte) (e *cacheEntry, miss bool) {
	e, ok := c.byText[string(text)]
	if !ok {
		e = &cacheEntry{gen: c.gen, text: string(text)}
		c.byText[e.text] = e
		c.used++
		return e, true
	}
	if e.gen != c.gen {
		e.gen = c.gen
		c.used++
	}
	return e, false
}

// decoded is one document after decoding, before merging.
type decoded struct {
	kind string
	res  hasDoc
	errs []*Error
	// need is what copying res out of the cache takes from the slabs.
	need slabSizes
	// badName is set when res's name is not a DNS label.
	badName bool
}

// hasDoc is every document kind.
type hasDoc interface {
	base() *doc
	// clone copies the document's top-level struct for a new Mesh
	// (clone.go), taking memory from s.
	clone(s *slabs) hasDoc
}

func (d *doc) base() *doc { return d }

// chunk is the text of one document and the file line it starts on.
type chunk struct {
	text []byte
	line int
}

// splitDocuments cuts a file at its document markers ("---" at the start
// of a line), so that each document can be cached on its own. A file with
// directives ("%YAML") is kept whole: a directive belongs to the document
// after it.
func splitDocuments(data []byte) []chunk {
	var out []chunk
	eachDocument(data, func(text []byte, line int) { out = append(out, chunk{text: text, line: line}) })
	return out
}

// eachDocument calls f with the text of each document splitDocuments finds
// and the line it starts on, without collecting them. It looks for the
// markers and counts the lines between them with the bytes package's
// vectorized searches: a large policy has far more lines than documents.
func eachDocument(data []byte, f func(text []byte, line int)) {
	if bytes.HasPrefix(data, []byte("%")) || bytes.Contains(data, []byte("\n%")) {
		f(data, 1)
		return
	}
	start, startLine := 0, 1
	// line is the line number at data[from].
	from, line := 0, 1
	for search := 0; ; {
		i := bytes.Index(data[search:], []byte("\n---"))
		if i < 0 {
			break
		}
		m := search + i + 1 // the marker's line starts here
		search = m
		if rest := data[m+3:]; len(rest) > 0 && rest[0] != ' ' && rest[0] != '\t' && rest[0] != '\n' && rest[0] != '\r' {
			continue // "----" or "---x": not a marker
		}
		line += bytes.Count(data[from:m], []byte("\n"))
		from = m
		f(data[start:m], startLine)
		start, startLine = m, line
	}
	f(data[start:], startLine)
}

// parallelAbove is the number of changed documents from which they are
// parsed concurrently: below it, the fan-out costs more than it saves.
const parallelAbove = 64

// parse reads every document of one file, from the cache when unchanged;
// changed documents are parsed concurrently (yaml.v3 is most of the cost
// of a cold load).
func (b *builder) parse(ctx context.Context, file string, data []byte) error {
	c := b.cache
	chunks, misses := c.chunks(file, data)
	if err := parseMisses(ctx, chunks, misses); err != nil {
		// The new entries are empty: they must not be found as decoded.
		for _, i := range misses {
			delete(c.byText, chunks[i].text)
		}
		return err
	}
	if !c.once {
		c.keep(file, data, chunks)
	}
	var need slabSizes
	docs := 0
	for _, ch := range chunks {
		docs += len(ch.entry.docs)
		for _, dc := range ch.entry.docs {
			need.add(dc.need)
		}
	}
	if docs == 0 {
		// An empty file is far more often a save caught half-way (an
		// editor truncates, then writes) than an intent to remove
		// everything: applying it would drop every node group.
		b.errs.at(Source{File: file}, "", "empty policy file: no documents (delete the file to remove what it defined)")
	}
	b.mesh.grow(need)
	s := newSlabs(need)
	for _, ch := range chunks {
		for _, dc := range ch.entry.docs {
			b.merge(materialize(dc, file, ch.line-1, s))
		}
	}
	return nil
}

// parseMisses decodes the documents of chunks[misses] into their entries.
func parseMisses(ctx context.Context, chunks []fileChunk, misses []int) error {
	return parallel.Spans(ctx, len(misses), parallel.Parts(len(misses), parallelAbove), func(_, lo, hi int) error {
		for _, i := range misses[lo:hi] {
			if err := ctx.Err(); err != nil {
				return err
			}
			chunks[i].entry.docs = parseChunk(chunks[i].text)
		}
		return nil
	})
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// parseChunk decodes the documents of text with positions relative to it
// and no file name; materialize places them.
func parseChunk(text string) []decoded {
	var out []decoded
	dec := yaml.NewDecoder(strings.NewReader(text))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			msg, line := err.Error(), 0
			if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
				line, _ = strconv.Atoi(m[1])
				msg = msg[len(m[0]):]
			}
			msg = strings.TrimPrefix(msg, "yaml: ")
			return append(out, decoded{errs: []*Error{{Line: line, Col: min(line, 1), Message: "invalid YAML: " + msg}}})
		}
		if n.Kind != yaml.DocumentNode || len(n.Content) == 0 {
			continue
		}
		dc := decodeDocument("", n.Content[0])
		if dc.res != nil {
			defaultDocument(dc.res)
			dc.need = needOf(dc.res)
			dc.badName = !validName(dc.res.base().Metadata.Name)
			dc.res.base().checked = checkDocument(dc.res)
		}
		out = append(out, dc)
	}
}

// materialize places a cached document in file, shifting its lines: a copy
// of its header, sharing the rest with the cache (clone.go).
func materialize(dc decoded, file string, shift int, s *slabs) decoded {
	place := func(s Source) Source {
		s.File = file
		if s.Line > 0 {
			s.Line += shift
		}
		return s
	}
	out := decoded{kind: dc.kind, badName: dc.badName}
	if len(dc.errs) > 0 {
		out.errs = make([]*Error, len(dc.errs))
	}
	for i, e := range dc.errs {
		c := *e
		s := place(Source{Line: c.Line, Col: c.Col})
		c.File, c.Line = s.File, s.Line
		out.errs[i] = &c
	}
	if dc.res == nil {
		return out
	}
	cp := dc.res.clone(s)
	d, from := cp.base(), dc.res.base()
	d.Source = place(from.Source)
	d.file, d.shift = file, shift
	out.res = cp
	return out
}
