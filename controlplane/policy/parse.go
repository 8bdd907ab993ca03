package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	"gopkg.in/yaml.v3"
)

// Loader loads policies like the package-level Load and Parse, but keeps
// every decoded document keyed by its text: a reload re-parses only the
// documents that changed, which in a mesh of 10,000 routes is most of the
// cost of a change. Documents are copied out of the cache, so Meshes never
// share state. The zero Loader is ready; it is safe for concurrent use.
type Loader struct {
	mu    sync.Mutex
	cache map[[sha256.Size]byte][]decoded
}

// docCache is one load's view of the cache: hits come from prev, and next
// collects what this load used, so entries of deleted documents go away.
type docCache struct {
	prev, next map[[sha256.Size]byte][]decoded
}

func (l *Loader) begin() *docCache {
	// Sized like the last load's: a reload mostly sees the same documents,
	// and growing the map re-hashes 20,000 keys in a large mesh.
	return &docCache{prev: l.cache, next: make(map[[sha256.Size]byte][]decoded, len(l.cache))}
}

func (l *Loader) end(c *docCache) { l.cache = c.next }

// decoded is one document after decoding, before merging.
type decoded struct {
	kind string
	res  hasDoc
	errs []*Error
}

// hasDoc is every document kind.
type hasDoc interface {
	base() *doc
	// clone deep-copies the document (clone.go).
	clone() hasDoc
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
	if bytes.HasPrefix(data, []byte("%")) || bytes.Contains(data, []byte("\n%")) {
		return []chunk{{text: data, line: 1}}
	}
	var out []chunk
	start, startLine, line := 0, 1, 1
	for i := 0; i < len(data); {
		end := bytes.IndexByte(data[i:], '\n')
		next := len(data)
		if end >= 0 {
			next = i + end + 1
		}
		l := data[i:next]
		if i > start && bytes.HasPrefix(l, []byte("---")) && (len(l) == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\n' || l[3] == '\r') {
			out = append(out, chunk{text: data[start:i], line: startLine})
			start, startLine = i, line
		}
		i = next
		line++
	}
	return append(out, chunk{text: data[start:], line: startLine})
}

// parallelAbove is the number of changed documents from which they are
// parsed concurrently: below it, the fan-out costs more than it saves.
const parallelAbove = 64

// parse reads every document of one file, from the cache when unchanged;
// changed documents are parsed concurrently (yaml.v3 is most of the cost
// of a cold load).
func (b *builder) parse(ctx context.Context, file string, data []byte) error {
	chunks := splitDocuments(data)
	keys := make([][sha256.Size]byte, len(chunks))
	parsed := make([][]decoded, len(chunks))
	var misses []int
	for i, c := range chunks {
		keys[i] = sha256.Sum256(c.text)
		docs, ok := b.cache.next[keys[i]]
		if !ok {
			docs, ok = b.cache.prev[keys[i]]
		}
		if ok {
			parsed[i] = docs
		} else {
			misses = append(misses, i)
		}
	}
	if len(misses) < parallelAbove {
		for _, i := range misses {
			parsed[i] = parseChunk(chunks[i].text)
		}
	} else {
		g, ctx := errgroup.WithContext(ctx)
		workers := runtime.GOMAXPROCS(0)
		per := (len(misses) + workers - 1) / workers
		for start := 0; start < len(misses); start += per {
			batch := misses[start:min(start+per, len(misses))]
			g.Go(func() error {
				for _, i := range batch {
					if err := ctx.Err(); err != nil {
						return err
					}
					parsed[i] = parseChunk(chunks[i].text)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	if b.seen == nil {
		// Sized for the documents at hand: growing it one insert at a time
		// rehashes 20,000 names in a large mesh.
		b.seen = make(map[[2]string]Source, len(chunks))
	}
	for i, c := range chunks {
		b.cache.next[keys[i]] = parsed[i]
		for _, dc := range parsed[i] {
			b.merge(materialize(dc, file, c.line-1))
		}
	}
	return nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// parseChunk decodes the documents of text with positions relative to it
// and no file name; materialize places them.
func parseChunk(text []byte) []decoded {
	var out []decoded
	dec := yaml.NewDecoder(bytes.NewReader(text))
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
		out = append(out, decodeDocument("", n.Content[0]))
	}
}

// materialize copies a cached document into file, shifting its lines.
func materialize(dc decoded, file string, shift int) decoded {
	place := func(s Source) Source {
		s.File = file
		if s.Line > 0 {
			s.Line += shift
		}
		return s
	}
	out := decoded{kind: dc.kind, errs: make([]*Error, len(dc.errs))}
	for i, e := range dc.errs {
		c := *e
		s := place(Source{Line: c.Line, Col: c.Col})
		c.File, c.Line = s.File, s.Line
		out.errs[i] = &c
	}
	if dc.res == nil {
		return out
	}
	cp := dc.res.clone()
	d, from := cp.base(), dc.res.base()
	d.Source = place(from.Source)
	d.file, d.shift = file, shift
	out.res = cp
	return out
}
