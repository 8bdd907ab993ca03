package policy

import (
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder fills Go values from yaml.v3 nodes strictly: unknown and
// duplicate fields, wrong node kinds and out-of-range numbers are errors,
// each at the node's position with its field path. It records the position
// of every field it sets so validation can point at them too.
type decoder struct {
	file string
	errs *errs
	pos  map[string]Source
	// steps counts decoded nodes; aliases can make a small document
	// expand exponentially ("billion laughs"), so decoding stops at
	// maxDecodeSteps.
	steps int
	// fields caches yamlFields per struct type.
	fields map[reflect.Type]map[string]int
}

// maxDecodeSteps bounds the nodes decoded per file, aliases expanded.
const maxDecodeSteps = 1 << 18

var durationType = reflect.TypeOf(Duration(0))

func (d *decoder) at(n *yaml.Node) Source { return Source{File: d.file, Line: n.Line, Col: n.Column} }

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs.at(d.at(n), path, format, args...)
}

// decode stores n into v (addressable), at field path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.steps++
	if d.steps == maxDecodeSteps {
		d.fail(n, path, "document too large: more than %d values once aliases are expanded", maxDecodeSteps)
	}
	if d.steps >= maxDecodeSteps {
		return
	}
	if path != "" {
		d.pos[path] = d.at(n)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // leaves the zero value: "absent"
	}
	if v.Type() == durationType {
		d.duration(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.structure(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want a list, got %s", nodeKind(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			if d.steps >= maxDecodeSteps {
				break
			}
			d.decode(c, s.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
		v.Set(s)
	case reflect.Map:
		d.mapping(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want a string, got %s", nodeKind(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || err != nil {
			d.fail(n, path, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Uint32:
		u, err := strconv.ParseUint(n.Value, 10, 32)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			d.fail(n, path, "want a whole number in 0..%d, got %s", uint32(math.MaxUint32), describe(n))
			return
		}
		v.SetUint(u)
	case reflect.Float64:
		f, err := strconv.ParseFloat(n.Value, 64)
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(n, path, "want a finite number, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	default:
		// Only the kinds above appear in the policy types; a test walks them.
		d.fail(n, path, "cannot decode into %s", v.Type())
	}
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		d.fail(n, path, "want a duration string such as \"250ms\" or \"30d\", got %s", describe(n))
		return
	}
	dur, err := ParseDuration(n.Value)
	if err != nil {
		d.fail(n, path, "%v", err)
		return
	}
	v.SetInt(int64(dur))
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got %s", nodeKind(n))
		return
	}
	if d.fields == nil {
		d.fields = map[reflect.Type]map[string]int{}
	}
	fields, ok := d.fields[v.Type()]
	if !ok {
		fields = yamlFields(v.Type())
		d.fields[v.Type()] = fields
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		fp := join(path, k.Value)
		idx, ok := fields[k.Value]
		switch {
		case !ok:
			d.fail(k, fp, "unknown field %q (known: %s)", k.Value, strings.Join(fieldNames(v.Type()), ", "))
		case seen[k.Value]:
			d.fail(k, fp, "field %q given twice", k.Value)
		default:
			seen[k.Value] = true
			f := v.Field(idx)
			d.decode(val, f, fp)
			if enum := v.Type().Field(idx).Tag.Get("enum"); enum != "" && f.Kind() == reflect.String && f.String() != "" &&
				!slices.Contains(strings.Split(enum, ","), f.String()) {
				d.fail(val, fp, "%q is not one of %s", f.String(), strings.ReplaceAll(enum, ",", ", "))
			}
		}
	}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got %s", nodeKind(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		fp := join(path, k.Value)
		key := reflect.New(v.Type().Key()).Elem()
		d.decode(k, key, fp)
		if m.MapIndex(key).IsValid() {
			d.fail(k, fp, "key %q given twice", k.Value)
			continue
		}
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, elem, fp)
		m.SetMapIndex(key, elem)
	}
	v.Set(m)
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// yamlFields maps yaml names to field indexes of struct type t.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if name := yamlName(t.Field(i)); name != "" {
			m[name] = i
		}
	}
	return m
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if name := yamlName(t.Field(i)); name != "" {
			names = append(names, name)
		}
	}
	return names
}

func yamlName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	if tag == "" || tag == "-" || !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(tag, ",")
	return name
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return describe(n)
	}
	return "something else"
}

func describe(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return nodeKind(n)
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	return strconv.Quote(v)
}
