package policy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the policy files and directories at paths (directories are
// walked recursively for .yaml, .yml and .json files, in lexical order),
// merges them into one Mesh, applies defaults and validates it. Endpoints
// files named by services are read too.
//
// # Errors
//
// A problem in the policy gives an ErrorList (errors.Is ErrInvalid) with
// every problem found, each with file, line, column and field path. An I/O
// failure on a named path is returned wrapped; ctx cancellation stops
// loading between files.
func Load(ctx context.Context, paths ...string) (*Mesh, error) {
	return (&Loader{cache: docCache{once: true}}).Load(ctx, paths...)
}

// Load is the package-level Load, reusing the documents of the previous
// call that have not changed.
func (l *Loader) Load(ctx context.Context, paths ...string) (*Mesh, error) {
	if len(paths) == 0 {
		return nil, errors.New("load policy: no path given")
	}
	files, err := expand(ctx, paths)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &builder{errs: &errs{}, mesh: &Mesh{}, cache: l.begin()}
	defer l.end(b.cache)
	total := 0
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("load policy: %w", err)
		}
		data, err := readFile(f)
		if err != nil {
			return nil, fmt.Errorf("load policy: %w", err)
		}
		if total += len(data); total > maxTotalSize {
			return nil, fmt.Errorf("load policy: %s: the policy files add up to more than %d MiB", f, maxTotalSize>>20)
		}
		b.mesh.files = append(b.mesh.files, f)
		if err := b.parse(ctx, f, data); err != nil {
			return nil, fmt.Errorf("load policy: %w", err)
		}
	}
	return b.finish(ctx)
}

// Parse parses one policy file's content as if read from file (used by
// tests, fuzzing and callers holding the bytes). Endpoints files it names
// are read from disk relative to file.
func Parse(file string, data []byte) (*Mesh, error) {
	return (&Loader{cache: docCache{once: true}}).Parse(file, data)
}

// Parse is the package-level Parse, reusing the documents of the previous
// call that have not changed.
func (l *Loader) Parse(file string, data []byte) (*Mesh, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &builder{errs: &errs{}, mesh: &Mesh{files: []string{file}}, cache: l.begin()}
	defer l.end(b.cache)
	if err := b.parse(context.Background(), file, data); err != nil {
		return nil, fmt.Errorf("parse policy: %w", err) // unreachable: the context is never done
	}
	return b.finish(context.Background())
}

func (b *builder) finish(ctx context.Context) (*Mesh, error) {
	m := b.mesh
	sortDocs(m, b.errs, &b.cache.index)
	m.index(&b.cache.index)
	if err := applyDefaults(ctx, m); err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	if err := validate(ctx, m, b.errs); err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	b.loadEndpoints()
	sort.Strings(m.files)
	m.files = slices.Compact(m.files)
	if err := b.errs.err(); err != nil {
		return nil, err
	}
	return m, nil
}

// builder accumulates documents and problems across files.
type builder struct {
	errs *errs
	mesh *Mesh
	// cache is the Loader's decoded documents and what it keeps between loads.
	cache *docCache
}

// header is a document's top level: the kind-independent fields.
type header struct {
	apiVersion, kind string
	metadata, spec   *yaml.Node
	endpoints        *yaml.Node
}

func (b *builder) header(file string, n *yaml.Node) (header, bool) {
	var h header
	src := Source{File: file, Line: n.Line, Col: n.Column}
	if n.Kind != yaml.MappingNode {
		b.errs.at(src, "", "a document must be a mapping with apiVersion, kind, metadata and spec")
		return h, false
	}
	ok := true
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		at := Source{File: file, Line: k.Line, Col: k.Column}
		if seen[k.Value] {
			b.errs.at(at, k.Value, "field %q given twice", k.Value)
			ok = false
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "apiVersion", "kind":
			switch {
			case v.Kind != yaml.ScalarNode:
				b.errs.at(at, k.Value, "want a string")
				ok = false
			case k.Value == "kind":
				h.kind = v.Value
			default:
				h.apiVersion = v.Value
			}
		case "metadata":
			h.metadata = v
		case "spec":
			h.spec = v
		case "endpoints":
			h.endpoints = v
		default:
			b.errs.at(at, k.Value, "unknown field %q (known: apiVersion, kind, metadata, spec)", k.Value)
			ok = false
		}
	}
	if h.apiVersion != APIVersion {
		b.errs.at(src, "apiVersion", "apiVersion %q: want %q", h.apiVersion, APIVersion)
		ok = false
	}
	return h, ok
}

// decodeDocument decodes one document node into its typed resource; it
// merges nothing, so its result can be cached and reused. res is nil when
// the header is unusable or the document is an endpoints file.
func decodeDocument(file string, n *yaml.Node) decoded {
	e := &errs{}
	b := &builder{errs: e}
	h, ok := b.header(file, n)
	if !ok {
		return decoded{errs: e.list}
	}
	src := Source{File: file, Line: n.Line, Col: n.Column}
	if h.kind == KindEndpoints {
		return decoded{} // read only when a service names the file
	}
	if h.endpoints != nil {
		e.at(src, "endpoints", "field \"endpoints\" is only for kind %s", KindEndpoints)
	}
	var (
		res  hasDoc
		spec reflect.Value
	)
	switch h.kind {
	case KindMesh:
		r := &MeshConfig{}
		res, spec = r, reflect.ValueOf(&r.Spec).Elem()
	case KindService:
		r := &Service{}
		res, spec = r, reflect.ValueOf(&r.Spec).Elem()
	case KindRoute:
		r := &Route{}
		res, spec = r, reflect.ValueOf(&r.Spec).Elem()
	case KindGateway:
		r := &Gateway{}
		res, spec = r, reflect.ValueOf(&r.Spec).Elem()
	case KindSidecar:
		r := &Sidecar{}
		res, spec = r, reflect.ValueOf(&r.Spec).Elem()
	case KindAuthorization:
		r := &AuthorizationPolicy{}
		res, spec = r, reflect.ValueOf(&r.Spec).Elem()
	default:
		e.at(src, "kind", "unknown kind %q (known: %s, %s, %s, %s, %s, %s, %s)", h.kind,
			KindMesh, KindService, KindRoute, KindGateway, KindSidecar, KindAuthorization, KindEndpoints)
		return decoded{errs: e.list}
	}
	d := res.base()
	d.Source = src
	d.pos = map[string]Source{}
	dec := &decoder{file: file, errs: e, pos: d.pos}
	if h.metadata == nil {
		e.at(src, "metadata", "metadata is required")
	} else {
		dec.decode(h.metadata, reflect.ValueOf(&d.Metadata).Elem(), "metadata")
	}
	if h.spec == nil {
		e.at(src, "spec", "spec is required")
	} else {
		dec.decode(h.spec, spec, "spec")
	}
	for _, x := range e.list {
		x.Kind, x.Name = h.kind, d.Metadata.Name
	}
	if dec.steps >= maxDecodeSteps {
		return decoded{errs: e.list} // too large to validate usefully
	}
	return decoded{kind: h.kind, res: res, errs: e.list}
}

// merge adds a decoded document (and its problems) to the mesh. A document
// with decode errors is still merged and validated, so one run reports
// every problem; its bad fields are left unset.
func (b *builder) merge(dc decoded) {
	b.errs.list = append(b.errs.list, dc.errs...)
	if dc.res == nil {
		return
	}
	d := dc.res.base()
	if dc.badName {
		b.errs.in(dc.kind, d, "metadata.name", "name %q must be a DNS label: lower-case letters, digits and '-', at most 63", d.Metadata.Name)
		return
	}
	if dc.kind == KindMesh {
		if m := b.mesh.Config; m != nil {
			b.errs.in(KindMesh, d, "", "a second Mesh document; the first is at %s", m.Source)
			return
		}
		b.mesh.Config = dc.res.(*MeshConfig)
		return
	}
	// Names repeated across documents are found once all are merged
	// (sortDocs), from the sorted slices.
	switch r := dc.res.(type) {
	case *Service:
		b.mesh.Services = append(b.mesh.Services, r)
	case *Route:
		b.mesh.Routes = append(b.mesh.Routes, r)
	case *Gateway:
		b.mesh.Gateways = append(b.mesh.Gateways, r)
	case *Sidecar:
		b.mesh.Sidecars = append(b.mesh.Sidecars, r)
	case *AuthorizationPolicy:
		b.mesh.Authorizations = append(b.mesh.Authorizations, r)
	}
}

// validName reports whether s is a DNS label: 1 to 63 lower-case letters,
// digits and '-', starting and ending with a letter or digit.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// sortDocs sorts each kind by name and drops the documents whose name an
// earlier one (in file order) has, reporting each. The services and routes
// of the last Mesh (prev) were sorted and unique: when the names are the
// same, in the same order, so are these.
func sortDocs(m *Mesh, e *errs, prev *meshIndex) {
	if !prev.services.same(m.Services) {
		m.Services = sortUnique(e, KindService, m.Services)
	}
	if !prev.routes.same(m.Routes) {
		m.Routes = sortUnique(e, KindRoute, m.Routes)
	}
	m.Gateways = sortUnique(e, KindGateway, m.Gateways)
	m.Sidecars = sortUnique(e, KindSidecar, m.Sidecars)
	m.Authorizations = sortUnique(e, KindAuthorization, m.Authorizations)
}

// sortUnique sorts docs by name, stably so that of documents sharing a
// name the first merged comes first: it is kept, the others are reported
// as duplicates of it and dropped. Policies are mostly written in name
// order, so a sorted slice is only checked.
func sortUnique[T hasDoc](e *errs, kind string, docs []T) []T {
	byName := func(x, y T) int { return strings.Compare(x.base().Metadata.Name, y.base().Metadata.Name) }
	if !slices.IsSortedFunc(docs, byName) {
		slices.SortStableFunc(docs, byName)
	}
	out := docs[:0]
	for _, d := range docs {
		if n := len(out); n > 0 {
			if first := out[n-1].base(); first.Metadata.Name == d.base().Metadata.Name {
				e.in(kind, d.base(), "metadata.name", "duplicate %s %q; the first is at %s", kind, first.Metadata.Name, first.Source)
				continue
			}
		}
		out = append(out, d)
	}
	clear(docs[len(out):])
	return out
}

// loadEndpoints reads the endpoints files services name, replacing each
// version's Endpoints with the file's (validation already made sure a
// version has one or the other). A service's versions are shared with the
// Loader's cache and earlier Meshes (clone.go), so a service naming a file
// gets its own copy of them first.
func (b *builder) loadEndpoints() {
	for _, s := range b.mesh.Services {
		copied := false
		for i := range s.Spec.Versions {
			if s.Spec.Versions[i].EndpointsFile == "" {
				continue
			}
			if !copied {
				s.Spec.Versions, copied = slices.Clone(s.Spec.Versions), true
			}
			v := &s.Spec.Versions[i]
			path := v.EndpointsFile
			if !filepath.IsAbs(path) {
				path = filepath.Join(filepath.Dir(s.Source.File), path)
			}
			v.EndpointsFile = path
			b.mesh.files = append(b.mesh.files, path)
			eps, err := LoadEndpoints(path)
			var list ErrorList
			switch {
			case errors.As(err, &list):
				b.errs.list = append(b.errs.list, list...)
			case err != nil:
				field := fmt.Sprintf("spec.versions[%d].endpointsFile", i)
				b.errs.in(KindService, &s.doc, field, "%v", err)
			default:
				v.Endpoints = eps
			}
		}
	}
}

// LoadEndpoints reads a kind Endpoints file: what a watcher calls when only
// an endpoints file changed.
//
// # Errors
//
// ErrorList for content problems (with file:line:col), a wrapped I/O error
// otherwise.
func LoadEndpoints(path string) ([]Endpoint, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("read endpoints: %w", err)
	}
	return ParseEndpoints(path, data)
}

// ParseEndpoints parses the content of a kind Endpoints file.
func ParseEndpoints(file string, data []byte) ([]Endpoint, error) {
	e := &errs{}
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		e.at(Source{File: file}, "", "invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil, e.err()
	}
	if n.Kind != yaml.DocumentNode || len(n.Content) == 0 {
		e.at(Source{File: file}, "", "empty endpoints file: want kind %s with endpoints", KindEndpoints)
		return nil, e.err()
	}
	b := &builder{errs: e}
	h, ok := b.header(file, n.Content[0])
	src := Source{File: file, Line: n.Content[0].Line, Col: n.Content[0].Column}
	if !ok {
		return nil, e.err()
	}
	if h.kind != KindEndpoints || h.metadata != nil || h.spec != nil {
		e.at(src, "kind", "want kind %s with only apiVersion, kind and endpoints", KindEndpoints)
		return nil, e.err()
	}
	var out EndpointsFile
	if h.endpoints != nil {
		d := &decoder{file: file, errs: e, pos: map[string]Source{}}
		d.decode(h.endpoints, reflect.ValueOf(&out.Endpoints).Elem(), "endpoints")
		if len(e.list) == 0 {
			fd := &doc{Source: src, pos: d.pos}
			validateEndpoints(e, fd, "", pathOf("endpoints"), out.Endpoints)
			for _, x := range e.list {
				x.Kind = KindEndpoints
			}
		}
	}
	if len(out.Endpoints) == 0 && len(e.list) == 0 {
		e.at(src, "endpoints", "no endpoints")
	}
	if err := e.err(); err != nil {
		return nil, err
	}
	for i := range out.Endpoints {
		defaultEndpoint(&out.Endpoints[i])
	}
	return out.Endpoints, nil
}
