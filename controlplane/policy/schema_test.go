package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite docs/policy.schema.json from the Go types")

const schemaFile = "../../docs/policy.schema.json"

func TestSchemaIsCurrent(t *testing.T) {
	got := Schema()
	if *update {
		if err := os.WriteFile(schemaFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatalf("%v (run go test ./controlplane/policy -run TestSchema -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run go test ./controlplane/policy -run TestSchema -update", schemaFile)
	}
}

// TestExamplesValidateAgainstSchema checks every document of every example
// (and the endpoints files) against the published schema, with a small
// validator for the keywords the schema uses.
func TestExamplesValidateAgainstSchema(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(Schema(), &schema); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../../examples/policies/*.yaml")
	eps, _ := filepath.Glob("../../examples/policies/*/*.yaml")
	files = append(append(files, eps...), "../../examples/mesh.yaml", "testdata/eps.yaml")
	docs := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var doc any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			docs++
			sv := &schemaValidator{root: schema}
			sv.check(schema, doc, "")
			for _, e := range sv.errs {
				t.Errorf("%s document %d: %s", f, i, e)
			}
		}
	}
	if docs < 10 {
		t.Errorf("only %d documents checked", docs)
	}
}

func TestSchemaRejects(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(Schema(), &schema); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"unknown field": "apiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {spilt: []}\n",
		"enum":          "apiVersion: maestro.dev/v1alpha1\nkind: Mesh\nmetadata: {name: m}\nspec: {mtls: {mode: strict}}\n",
		"duration":      "apiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {timeout: soon}\n",
		"missing spec":  "apiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\n",
		"type":          "apiVersion: maestro.dev/v1alpha1\nkind: Gateway\nmetadata: {name: g}\nspec: {port: eighty}\n",
	} {
		var doc any
		if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
			t.Fatal(err)
		}
		sv := &schemaValidator{root: schema}
		sv.check(schema, doc, "")
		if len(sv.errs) == 0 {
			t.Errorf("%s: schema accepted %q", name, text)
		}
	}
}

// schemaValidator implements the subset of JSON Schema 2020-12 Schema
// emits: $ref, type, properties, additionalProperties, required, enum,
// const, items, allOf, if/then, pattern, minimum, maximum, boolean schemas.
type schemaValidator struct {
	root map[string]any
	errs []string
}

func (v *schemaValidator) bad(path, format string, args ...any) {
	v.errs = append(v.errs, path+": "+fmt.Sprintf(format, args...))
}

func (v *schemaValidator) valid(s any, x any) bool {
	sub := &schemaValidator{root: v.root}
	sub.check(s, x, "")
	return len(sub.errs) == 0
}

func (v *schemaValidator) check(s any, x any, path string) {
	if b, ok := s.(bool); ok {
		if !b {
			v.bad(path, "not allowed")
		}
		return
	}
	m := s.(map[string]any)
	if ref, ok := m["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/$defs/")
		v.check(v.root["$defs"].(map[string]any)[name], x, path)
	}
	if c, ok := m["const"]; ok && fmt.Sprint(c) != fmt.Sprint(x) {
		v.bad(path, "want %v", c)
	}
	if e, ok := m["enum"].([]any); ok && !slices.ContainsFunc(e, func(y any) bool { return fmt.Sprint(y) == fmt.Sprint(x) }) {
		v.bad(path, "%v not in %v", x, e)
	}
	if ty, ok := m["type"].(string); ok && !hasType(ty, x) {
		v.bad(path, "want %s, got %T", ty, x)
		return
	}
	if p, ok := m["pattern"].(string); ok {
		if s, ok := x.(string); ok && !regexp.MustCompile(p).MatchString(s) {
			v.bad(path, "%q does not match %s", s, p)
		}
	}
	if n, ok := number(x); ok {
		if lo, ok := m["minimum"].(float64); ok && n < lo {
			v.bad(path, "%v < %v", n, lo)
		}
		if hi, ok := m["maximum"].(float64); ok && n > hi {
			v.bad(path, "%v > %v", n, hi)
		}
	}
	if items, ok := m["items"]; ok {
		if arr, ok := x.([]any); ok {
			for i, e := range arr {
				v.check(items, e, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	if obj, ok := x.(map[string]any); ok {
		props, _ := m["properties"].(map[string]any)
		for k, val := range obj {
			if ps, ok := props[k]; ok {
				v.check(ps, val, path+"."+k)
			} else if ap, ok := m["additionalProperties"]; ok {
				v.check(ap, val, path+"."+k)
			}
		}
		if req, ok := m["required"].([]any); ok {
			for _, r := range req {
				if _, ok := obj[r.(string)]; !ok {
					v.bad(path, "%v is required", r)
				}
			}
		}
	}
	if all, ok := m["allOf"].([]any); ok {
		for _, sub := range all {
			sm := sub.(map[string]any)
			if cond, ok := sm["if"]; ok && !v.valid(cond, x) {
				continue
			}
			if then, ok := sm["then"]; ok {
				v.check(then, x, path)
			}
		}
	}
}

func hasType(ty string, x any) bool {
	switch ty {
	case "object":
		_, ok := x.(map[string]any)
		return ok
	case "array":
		_, ok := x.([]any)
		return ok
	case "string":
		_, ok := x.(string)
		return ok
	case "boolean":
		_, ok := x.(bool)
		return ok
	case "integer":
		_, ok := x.(int)
		return ok
	case "number":
		_, ok := number(x)
		return ok
	}
	return false
}

func number(x any) (float64, bool) {
	switch n := x.(type) {
	case int:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// TestDocsShowTheDemoMesh keeps docs/policy.md's complete example equal to
// examples/mesh.yaml (which TestLoadExamples loads).
func TestDocsShowTheDemoMesh(t *testing.T) {
	doc, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	mesh, err := os.ReadFile("../../examples/mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, append([]byte("```yaml\n"), append(mesh, []byte("```")...)...)) {
		t.Error("docs/policy.md does not contain examples/mesh.yaml verbatim in a yaml block")
	}
}
