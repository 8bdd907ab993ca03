package policy

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
)

// SchemaID is the $id of the generated JSON Schema.
const SchemaID = "https://maestro.dev/schemas/policy.schema.json"

// durationPattern is what ParseDuration accepts, loosely: Go durations or
// whole days.
const durationPattern = `^([0-9]+d|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+|0)$`

type kindType struct {
	kind string
	typ  reflect.Type
}

// specTypes are the spec type of every kind with metadata and spec.
func specTypes() []kindType {
	return []kindType{
		{KindMesh, reflect.TypeOf(MeshSpec{})},
		{KindService, reflect.TypeOf(ServiceSpec{})},
		{KindRoute, reflect.TypeOf(RouteSpec{})},
		{KindGateway, reflect.TypeOf(GatewaySpec{})},
		{KindSidecar, reflect.TypeOf(SidecarSpec{})},
		{KindAuthorization, reflect.TypeOf(AuthorizationSpec{})},
	}
}

// Schema returns the JSON Schema (draft 2020-12) of one policy document,
// generated from the Go types so that docs/policy.schema.json (for editors)
// cannot drift from what Load accepts. Cross-document rules (references,
// weights summing to 100) are Load's alone.
func Schema() []byte {
	g := &schemaGen{defs: map[string]any{}}
	kinds := []string{}
	var allOf []any
	for _, kt := range specTypes() {
		kinds = append(kinds, kt.kind)
		allOf = append(allOf, map[string]any{
			"if": map[string]any{"properties": map[string]any{"kind": map[string]any{"const": kt.kind}}},
			"then": map[string]any{
				"required":   []string{"metadata", "spec"},
				"properties": map[string]any{"spec": g.of(kt.typ, ""), "endpoints": false},
			},
		})
	}
	kinds = append(kinds, KindEndpoints)
	allOf = append(allOf, map[string]any{
		"if": map[string]any{"properties": map[string]any{"kind": map[string]any{"const": KindEndpoints}}},
		"then": map[string]any{
			"required":   []string{"endpoints"},
			"properties": map[string]any{"metadata": false, "spec": false},
		},
	})
	root := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"$id":         SchemaID,
		"title":       "Maestro mesh policy document",
		"description": "One YAML document of a Maestro mesh policy; see docs/policy.md. Generated from controlplane/policy: do not edit.",
		"type":        "object",
		"required":    []string{"apiVersion", "kind"},
		"properties": map[string]any{
			"apiVersion": map[string]any{"const": APIVersion},
			"kind":       map[string]any{"enum": kinds},
			"metadata":   g.of(reflect.TypeOf(Metadata{}), ""),
			"spec":       map[string]any{"type": "object"},
			"endpoints":  g.of(reflect.TypeOf([]Endpoint{}), ""),
		},
		"additionalProperties": false,
		"allOf":                allOf,
		"$defs":                g.defs,
	}
	out, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		panic(err) // only maps, slices and strings: cannot fail
	}
	return append(out, '\n')
}

type schemaGen struct{ defs map[string]any }

// of returns the schema of t; structs become $defs entries.
func (g *schemaGen) of(t reflect.Type, enum string) map[string]any {
	if t == durationType {
		return map[string]any{"type": "string", "pattern": durationPattern}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.of(t.Elem(), enum)
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.of(t.Elem(), enum)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.of(t.Elem(), "")}
	case reflect.String:
		s := map[string]any{"type": "string"}
		if enum != "" {
			s["enum"] = strings.Split(enum, ",")
		}
		return s
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Uint32:
		return map[string]any{"type": "integer", "minimum": 0, "maximum": math.MaxUint32}
	case reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Struct:
		name := t.Name()
		if _, ok := g.defs[name]; !ok {
			g.defs[name] = true // placeholder against recursion
			props := map[string]any{}
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				n := yamlName(f)
				if n == "" {
					continue
				}
				p := g.of(f.Type, f.Tag.Get("enum"))
				if d := f.Tag.Get("doc"); d != "" {
					p = withDescription(p, d)
				}
				props[n] = p
			}
			g.defs[name] = map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		}
		return map[string]any{"$ref": "#/$defs/" + name}
	}
	return map[string]any{}
}

// withDescription adds a description; next to a $ref it needs its own
// object (allowed in 2020-12).
func withDescription(s map[string]any, d string) map[string]any {
	out := make(map[string]any, len(s)+1)
	for k, v := range s {
		out[k] = v
	}
	out["description"] = d
	return out
}
