package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoaderReuseMatchesFreshParse: a Loader that has seen other versions
// of a file returns exactly what a fresh parse returns, positions included,
// after lines shift, documents change, and errors come and go.
func TestLoaderReuseMatchesFreshParse(t *testing.T) {
	edited := strings.Replace(base, "weight: 90}, {version: v2, weight: 10}", "weight: 80}, {version: v2, weight: 20}", 1)
	broken := base + route("r", "{service: nope}")
	steps := []string{
		base,
		"# a comment that shifts every line\n\n" + base,
		edited,
		broken,
		"# shifted\n" + broken,
		base,
	}
	reloadsMatchFreshParses(t, steps)
}

// TestLoaderLeavesEarlierMeshesUnchanged: Meshes share documents with the
// Loader's cache, so loading B after A must leave A as it was (deep-equal
// to a fresh parse of A, taken before B), and what the package fills in
// per Mesh (versions defaulted from other documents, endpoints files
// resolved against the policy's directory) must not leak between Meshes.
// Each document but the services is the same text in A and B, so it comes
// from the cache.
func TestLoaderLeavesEarlierMeshesUnchanged(t *testing.T) {
	shared := mesh("{tracing: {collector: {service: otel}}, filters: {fanout: {remote: {url: 'http://w/f.wasm', sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, service: otel}}}}") +
		svc("fraud", "{versions: [{name: v1, endpointsFile: eps.yaml}]}") +
		route("fraud", "{service: fraud, split: [{weight: 100}], shadow: {service: otel}, rules: [{name: canary, headers: [{name: x, exact: y}], split: [{service: otel, weight: 100}]}]}") +
		route("ens", "{service: otel, match: {model: m}, ensemble: {members: [{model: a}, {model: b}]}}")
	a := shared + svc("otel", "{versions: [{name: v1, endpoints: [{address: 10.0.0.1, port: 1}]}]}")
	b := shared + svc("otel", "{versions: [{name: v2, endpoints: [{address: 10.0.0.2, port: 2}]}]}")
	dirA, dirB := t.TempDir(), t.TempDir()
	write := func(dir, name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	eps := func(port int) string {
		return fmt.Sprintf("apiVersion: maestro.dev/v1alpha1\nkind: Endpoints\nendpoints: [{address: 10.1.0.1, port: %d}]\n", port)
	}
	pathA := write(dirA, "p.yaml", a)
	write(dirA, "eps.yaml", eps(7001))
	pathB := write(dirB, "p.yaml", b)
	write(dirB, "eps.yaml", eps(7002))

	l := &Loader{}
	ctx := context.Background()
	mA, err := l.Load(ctx, pathA)
	if err != nil {
		t.Fatal(err)
	}
	before, err := Load(ctx, pathA)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(mA, before) {
		t.Fatal("the Loader's first Mesh differs from a fresh load")
	}
	mB, err := l.Load(ctx, pathB)
	if err != nil {
		t.Fatal(err)
	}
	// Loading A again after B gives A's Mesh once more: nothing B filled
	// in stayed in the cache.
	mA2, err := l.Load(ctx, pathA)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(mA, before) {
		t.Error("loading B changed the Mesh of A")
	}
	if !reflect.DeepEqual(mA2, before) {
		t.Error("loading A after B differs from a fresh load of A")
	}
	wantB, err := Load(ctx, pathB)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(mB, wantB) {
		t.Error("the Mesh of B differs from a fresh load of B")
	}
	// The fields filled per Mesh, spelled out.
	for _, c := range []struct {
		m        *Mesh
		dir      string
		version  string
		port     uint32
		meshName string
	}{{mA, dirA, "v1", 7001, "A"}, {mB, dirB, "v2", 7002, "B"}} {
		v := c.m.Service("fraud").Spec.Versions[0]
		if want := filepath.Join(c.dir, "eps.yaml"); v.EndpointsFile != want || len(v.Endpoints) != 1 || v.Endpoints[0].Port != c.port {
			t.Errorf("%s: fraud v1 has %s %v, want %s port %d", c.meshName, v.EndpointsFile, v.Endpoints, want, c.port)
		}
		r := c.m.Route("fraud").Spec
		got := []string{
			c.m.Config.Spec.Tracing.Collector.Version, c.m.Config.Spec.Filters.Fanout.Remote.Version,
			r.Shadow.Version, r.Rules[0].Split[0].Version,
			c.m.Route("ens").Spec.Ensemble.Members[0].Version, c.m.Route("ens").Spec.Ensemble.Members[1].Version,
		}
		for i, g := range got {
			if g != c.version {
				t.Errorf("%s: defaulted version %d is %q, want %q", c.meshName, i, g, c.version)
			}
		}
	}
}

func TestSplitDocuments(t *testing.T) {
	for name, tc := range map[string]struct {
		in    string
		lines []int
	}{
		"one":               {"a: 1\n", []int{1}},
		"leading marker":    {"---\na: 1\n---\nb: 2\n", []int{1, 3}},
		"marker with value": {"a: 1\n--- {b: 2}\n---\t\nc: 3", []int{1, 2, 3}},
		"not a marker":      {"a: 1\n----\n -- \nb: |\n  ---\n", []int{1}},
		"crlf":              {"a: 1\r\n---\r\nb: 2\r\n", []int{1, 2}},
		"directive":         {"%YAML 1.2\n---\na: 1\n---\nb: 1\n", []int{1}},
	} {
		var lines []int
		for _, c := range splitDocuments([]byte(tc.in)) {
			lines = append(lines, c.line)
		}
		if !reflect.DeepEqual(lines, tc.lines) {
			t.Errorf("%s: chunks start on lines %v, want %v", name, lines, tc.lines)
		}
	}
}

func TestLoaderConcurrentUse(t *testing.T) {
	l := &Loader{}
	done := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			_, err := l.Parse("p.yaml", []byte(base))
			done <- err
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkReload10k is one weight change in a policy of 10,000 routes and
// 20,000 service versions in one file: a fresh parse against a Loader that
// saw the previous version.
func BenchmarkReload10k(b *testing.B) {
	gen := func(w int) []byte {
		var sb strings.Builder
		names := make([]string, 10000)
		for i := range names {
			names[i] = fmt.Sprintf("m%05d", i)
			fmt.Fprintf(&sb, "---\napiVersion: maestro.dev/v1alpha1\nkind: Service\nmetadata: {name: s%05d}\nspec:\n  versions:\n"+
				"    - {name: v0, endpoints: [{address: 10.0.%d.%d, port: 9000}]}\n    - {name: v1, endpoints: [{address: 10.1.%d.%d, port: 9000}]}\n",
				i, i/256%256, i%256, i/256%256, i%256)
			a := 90
			if i == 0 {
				a = w
			}
			fmt.Fprintf(&sb, "---\napiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata: {name: %s}\nspec:\n  service: s%05d\n  match: {model: %s}\n"+
				"  split: [{version: v0, weight: %d}, {version: v1, weight: %d}]\n", names[i], i, names[i], a, 100-a)
		}
		fmt.Fprintf(&sb, "---\napiVersion: maestro.dev/v1alpha1\nkind: Gateway\nmetadata: {name: edge}\nspec: {port: 8080, routes: [%s]}\n", strings.Join(names, ", "))
		return []byte(sb.String())
	}
	texts := [2][]byte{gen(90), gen(80)}
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			if _, err := Parse("p.yaml", texts[0]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/reload")
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1e3/float64(b.N), "cpu-ms/reload")
	})
	b.Run("cached", func(b *testing.B) {
		l := &Loader{}
		if _, err := l.Parse("p.yaml", texts[0]); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		cpu0 := cpuTime()
		i := 1
		for b.Loop() {
			m, err := l.Parse("p.yaml", texts[i%2])
			if err != nil || m == nil {
				b.Fatal(errors.Join(err, errors.New("nil mesh")))
			}
			i++
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/reload")
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1e3/float64(b.N), "cpu-ms/reload")
	})
}

// cpuTime is the process's user+system CPU time: on a shared machine it
// measures the work of a benchmark better than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fill sets every field reachable from v to a non-zero value: slices of
// one element, maps of one entry, allocated pointers.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Field(i).CanSet() {
				fill(v.Field(i))
			}
		}
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Uint32:
		v.SetUint(7)
	case reflect.Float64:
		v.SetFloat(1.5)
	case reflect.Int64:
		v.SetInt(3)
	}
}

// TestClonesCopyHeaders: a document placed in a new Mesh equals the cached
// one and has its own header, so setting its position (as materialize does)
// leaves the cached document as it was; its contents are shared on purpose
// (clone.go).
func TestClonesCopyHeaders(t *testing.T) {
	for _, orig := range []hasDoc{&MeshConfig{}, &Service{}, &Route{}, &Gateway{}, &Sidecar{}, &AuthorizationPolicy{}} {
		v := reflect.ValueOf(orig).Elem()
		for i := 0; i < v.NumField(); i++ {
			if v.Field(i).CanSet() {
				fill(v.Field(i))
			}
		}
		orig.base().Metadata.Labels = map[string]string{"a": "b"}
		orig.base().Source = Source{File: "cache", Line: 1, Col: 1}
		name := reflect.TypeOf(orig).Elem().Name()
		c := orig.clone(newSlabs(needOf(orig)))
		if !reflect.DeepEqual(c, orig) {
			t.Errorf("%s: clone differs from the original", name)
		}
		if c.base() == orig.base() {
			t.Fatalf("%s: clone is the original", name)
		}
		d := c.base()
		d.Source, d.file, d.shift, d.checked = Source{File: "mesh", Line: 9, Col: 2}, "mesh", 8, true
		if o := orig.base(); o.Source != (Source{File: "cache", Line: 1, Col: 1}) || o.file != "" || o.shift != 0 || o.checked {
			t.Errorf("%s: placing the clone changed the original's header", name)
		}
	}
}

// TestParallelParse: enough changed documents to be parsed concurrently
// give the same mesh and error positions as when they come one by one.
func TestParallelParse(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(base)
	for i := 0; i < 2*parallelAbove; i++ {
		port := 9000 + i
		if i == parallelAbove+5 {
			port = 0
		}
		sb.WriteString(svc(fmt.Sprintf("s%03d", i), fmt.Sprintf("{versions: [{name: v1, endpoints: [{address: a, port: %d}]}]}", port)))
	}
	text := sb.String()
	_, err := Parse("p.yaml", []byte(text))
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 {
		t.Fatalf("got %v, want one error", err)
	}
	wantLine := 25 + 5*(parallelAbove+5) + 5
	if e := list[0]; e.Line != wantLine || e.Name != fmt.Sprintf("s%03d", parallelAbove+5) {
		t.Errorf("error at line %d of %q, want line %d", e.Line, e.Name, wantLine)
	}
	// One by one: a Loader that has every document but the first cached.
	l := &Loader{}
	if _, err := l.Parse("p.yaml", []byte(strings.Replace(text, "name: fraud, namespace: ml", "name: fraud, namespace: ml2", 1))); err == nil {
		t.Fatal("want the same error")
	}
	got, gotErr := l.Parse("p.yaml", []byte(text))
	if fmt.Sprint(gotErr) != fmt.Sprint(err) || got != nil {
		t.Errorf("sequential parse differs: %v", gotErr)
	}
}

// TestLoaderCancelledParseLeavesNoEntries: a parse stopped part-way must
// not leave undecoded entries behind that a later load would take as
// decoded documents.
func TestLoaderCancelledParseLeavesNoEntries(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(base)
	for i := 0; i < 2*parallelAbove; i++ {
		sb.WriteString(svc(fmt.Sprintf("s%03d", i), fmt.Sprintf("{versions: [{name: v1, endpoints: [{address: a, port: %d}]}]}", 9000+i)))
	}
	text := []byte(sb.String())
	l := &Loader{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := l.begin()
	b := &builder{errs: &errs{}, mesh: &Mesh{}, cache: c}
	if err := b.parse(ctx, "p.yaml", text); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	l.end(c)
	for k, e := range l.cache.byText {
		if e.docs == nil {
			t.Fatalf("entry left undecoded: %.40q", k)
		}
	}
	got, gotErr := l.Parse("p.yaml", text)
	want, wantErr := Parse("p.yaml", text)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
		t.Errorf("parse after a cancelled one differs from a fresh parse: %v", gotErr)
	}
}

// TestLoaderDropsUnusedDocuments: the cache holds the documents of the
// last load only, so a long-running process does not keep every version of
// every document it ever saw.
func TestLoaderDropsUnusedDocuments(t *testing.T) {
	l := &Loader{}
	edited := strings.Replace(base, "weight: 90}, {version: v2, weight: 10}", "weight: 80}, {version: v2, weight: 20}", 1)
	for _, text := range []string{base, edited, base, edited} {
		if _, err := l.Parse("p.yaml", []byte(text)); err != nil {
			t.Fatal(err)
		}
		if got, want := len(l.cache.byText), len(splitDocuments([]byte(text))); got != want {
			t.Errorf("cache holds %d documents, want the %d of the last load", got, want)
		}
	}
}

// splitByLines is the line-by-line reading of splitDocuments' rule, kept
// as the reference the marker search must agree with.
func splitByLines(data []byte) []chunk {
	if bytes.HasPrefix(data, []byte("%")) || bytes.Contains(data, []byte("\n%")) {
		return []chunk{{text: data, line: 1}}
	}
	var out []chunk
	start, startLine, line := 0, 1, 1
	for i := 0; i < len(data); {
		next := len(data)
		if end := bytes.IndexByte(data[i:], '\n'); end >= 0 {
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

func FuzzSplitDocuments(f *testing.F) {
	for _, s := range []string{"", "a: 1\n", "---\na: 1\n---\nb: 2\n", "a: 1\n--- {b: 2}\n---\t\nc: 3", "a: 1\n----\n -- \nb: |\n  ---\n",
		"a: 1\r\n---\r\nb: 2\r\n", "%YAML 1.2\n---\na: 1\n", "---\n---\n---", "x\n---", "x\n---y\n--- \n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, want := splitDocuments(data), splitByLines(data)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q: got %v, want %v", data, got, want)
		}
	})
}

// TestDuplicatesOutOfOrder: of documents sharing a kind and name, the first
// in file order is kept and every later one is reported against it, also
// when the names come out of order.
func TestDuplicatesOutOfOrder(t *testing.T) {
	spec := "{service: fraud, split: [{version: v1, weight: 100}]}"
	text := base + route("zz", spec) + route("aa", spec) + route("zz", spec) + route("aa", spec) + route("zz", spec)
	_, err := Parse("p.yaml", []byte(text))
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("got %v, want an ErrorList", err)
	}
	// base has 25 lines; each route takes 5 after its marker, its name on
	// the third.
	first := map[string]int{"zz": 27, "aa": 32}
	var got []string
	for _, e := range list {
		got = append(got, fmt.Sprintf("%d %s", e.Line, e.Message))
	}
	want := []string{
		fmt.Sprintf("39 duplicate Route \"zz\"; the first is at p.yaml:%d:1", first["zz"]),
		fmt.Sprintf("44 duplicate Route \"aa\"; the first is at p.yaml:%d:1", first["aa"]),
		fmt.Sprintf("49 duplicate Route \"zz\"; the first is at p.yaml:%d:1", first["zz"]),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// parseUnchecked is Parse with every document's own checks run again at
// load time, as if none had passed when decoded.
func parseUnchecked(file string, data []byte) (*Mesh, error) {
	l := &Loader{}
	b := &builder{errs: &errs{}, mesh: &Mesh{files: []string{file}}, cache: l.begin()}
	if err := b.parse(context.Background(), file, data); err != nil {
		return nil, err
	}
	uncheck(b.mesh)
	return b.finish(context.Background())
}

func uncheck(m *Mesh) {
	if m == nil {
		return
	}
	for _, s := range m.Services {
		s.checked = false
	}
	for _, r := range m.Routes {
		r.checked = false
	}
	for _, g := range m.Gateways {
		g.checked = false
	}
}

// TestCheckedMatchesFullValidation: skipping the own checks of documents
// that passed them when decoded reports exactly what checking everything
// reports, in the same order, for every error case and the examples.
func TestCheckedMatchesFullValidation(t *testing.T) {
	texts := map[string]string{"base": base,
		"ensemble member errors": base + route("e", "{match: {model: m}, ensemble: {members: [{version: v1}, {service: fraud, version: v2, model: x, weight: -1}]}}"),
		"split errors":           base + route("s", "{split: [{version: v1, weight: 60}, {version: v1, weight: 30}]}"),
	}
	for _, c := range errCases {
		text := base + c.extra
		if c.bare {
			text = c.extra
		}
		texts[c.name] = text
	}
	for name, text := range texts {
		got, gotErr := Parse("p.yaml", []byte(text))
		want, wantErr := parseUnchecked("p.yaml", []byte(text))
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Errorf("%s: errors differ:\n got %v\nwant %v", name, gotErr, wantErr)
			continue
		}
		uncheck(got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: meshes differ", name)
		}
	}
}

// FuzzChunkReuse: cutting a file while reusing the documents of its last
// version gives exactly the documents and lines of cutting it afresh.
func FuzzChunkReuse(f *testing.F) {
	edited := strings.Replace(base, "weight: 90}", "weight: 80}", 1)
	for _, s := range [][2]string{
		{base, edited}, {base, "# shifted\n\n" + edited}, {base, base + route("r", "{}")}, {base + route("r", "{}"), base},
		{"a\n---\nb\n---\nc\n", "a\n---\nc\n"}, {"a\n---\nb\n", "a\n--x\nb\n"}, {"a\n---\nb\n", "a\n---\nb\n---\n"},
		{"a\n---\nb", "%YAML 1.2\n---\na\n---\nb"}, {"", "a"}, {"a", ""}, {"---\n---\n", "---\n---\n---\n"}, {"x\n---\ny\n", "x\n---\ny\n"},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, old, data []byte) {
		l := &Loader{}
		c := l.begin()
		chunks, _ := c.chunks("f", old)
		c.keep("f", old, chunks)
		l.end(c)
		c = l.begin()
		got, _ := c.chunks("f", data)
		var gotChunks []chunk
		at := 0
		for _, ch := range got {
			gotChunks = append(gotChunks, chunk{text: []byte(ch.text), line: ch.line})
			if ch.off != at {
				t.Fatalf("after %q, %q: a document at %d says it is at %d", old, data, at, ch.off)
			}
			at += len(ch.text)
		}
		if want := splitDocuments(data); !reflect.DeepEqual(gotChunks, want) {
			t.Errorf("after %q, %q: got %v, want %v", old, data, gotChunks, want)
		}
	})
}

// TestLoaderEditsMatchFreshParse: documents inserted, removed, changed and
// moved between loads give what a fresh parse gives, errors and positions
// included.
func TestLoaderEditsMatchFreshParse(t *testing.T) {
	spec := "{service: fraud, split: [{version: v1, weight: 100}]}"
	bad := "{service: nope, split: [{version: v1, weight: 100}]}"
	steps := []string{
		base + route("a", spec) + route("b", spec) + route("c", spec),
		base + route("a", spec) + route("c", spec),
		base + route("a", spec) + route("x", bad) + route("c", spec),
		"# one\n# two\n" + base + route("a", spec) + route("x", bad) + route("c", spec),
		base + route("c", spec) + route("a", spec),
		base + route("a", spec) + route("c", bad) + route("c", spec),
		route("a", spec) + base,
		base,
	}
	reloadsMatchFreshParses(t, steps)
}

// reloadsMatchFreshParses loads each text in turn through one Loader and
// checks every result, and every error, equals a fresh Parse of it.
func reloadsMatchFreshParses(t *testing.T, steps []string) {
	t.Helper()
	l := &Loader{}
	for i, text := range steps {
		got, gotErr := l.Parse("p.yaml", []byte(text))
		want, wantErr := Parse("p.yaml", []byte(text))
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("step %d: errors differ:\n got %v\nwant %v", i, gotErr, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: meshes differ", i)
		}
	}
}
