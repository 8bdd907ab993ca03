package model_test

import (
	"reflect"
	"strconv"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// accessor finds one value inside a mesh.
type accessor func(m *model.Mesh) reflect.Value

// TestEqualSeesEveryField changes, one at a time, every field of a mesh in
// which every field is set (filled by reflection from the types, not from a
// sample, so a field no sample fills is checked too; pointers are allocated
// and slices hold one element), and checks that Equal and Hash both notice.
// It also clears every pointer and slice and grows every slice. A field
// added to a type but not to its Equal method fails here.
func TestEqualSeesEveryField(t *testing.T) {
	type mutation struct {
		path   string
		mutate func(m *model.Mesh)
	}
	var muts []mutation
	var walk func(v reflect.Value, get accessor, path string)
	walk = func(v reflect.Value, get accessor, path string) {
		add := func(suffix string, f func(reflect.Value)) {
			muts = append(muts, mutation{path + suffix, func(m *model.Mesh) { f(get(m)) }})
		}
		switch v.Kind() {
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				if !v.Type().Field(i).IsExported() {
					continue // bookkeeping (Build's validated mark), not content
				}
				walk(v.Field(i), func(m *model.Mesh) reflect.Value { return get(m).Field(i) }, path+"."+v.Type().Field(i).Name)
			}
		case reflect.Pointer:
			if v.IsNil() {
				elem := v.Type().Elem()
				add("=new", func(x reflect.Value) { x.Set(reflect.New(elem)) })
				return
			}
			add("=nil", func(x reflect.Value) { x.SetZero() })
			walk(v.Elem(), func(m *model.Mesh) reflect.Value { return get(m).Elem() }, path)
		case reflect.Slice:
			elem := v.Type().Elem()
			add("+append", func(x reflect.Value) { x.Set(reflect.Append(x, reflect.Zero(elem))) })
			if v.Len() > 0 {
				add("=nil", func(x reflect.Value) { x.SetZero() })
			}
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), func(m *model.Mesh) reflect.Value { return get(m).Index(i) }, path+"["+v.Index(i).Type().Name()+"#"+itoa(i)+"]")
			}
		case reflect.String:
			add("", func(x reflect.Value) { x.SetString(x.String() + "x") })
		case reflect.Bool:
			add("", func(x reflect.Value) { x.SetBool(!x.Bool()) })
		case reflect.Int, reflect.Int64, reflect.Int32:
			add("", func(x reflect.Value) { x.SetInt(x.Int() + 1) })
		case reflect.Uint, reflect.Uint32, reflect.Uint64, reflect.Uint8:
			add("", func(x reflect.Value) { x.SetUint(x.Uint() + 1) })
		case reflect.Float64:
			add("", func(x reflect.Value) { x.SetFloat(x.Float() + 0.5) })
		default:
			t.Fatalf("%s: kind %s not handled by this test", path, v.Kind())
		}
	}
	full := func() *model.Mesh {
		m := &model.Mesh{}
		fill(t, reflect.ValueOf(m).Elem(), map[reflect.Type]bool{})
		return m
	}
	sample := full()
	walk(reflect.ValueOf(sample).Elem(), func(m *model.Mesh) reflect.Value { return reflect.ValueOf(m).Elem() }, "mesh")
	if len(muts) < 150 {
		t.Fatalf("only %d mutations found; the walk is broken", len(muts))
	}
	hash := sample.Hash()
	if other := full(); !sample.Equal(other) || other.Hash() != hash {
		t.Fatal("two meshes filled alike differ: the fill is not deterministic")
	}
	for _, mu := range muts {
		m := full()
		mu.mutate(m)
		if sample.Equal(m) || m.Equal(sample) {
			t.Errorf("%s: change not seen by Equal", mu.path)
		}
		if m.Hash() == hash {
			t.Errorf("%s: change not seen by Hash", mu.path)
		}
	}
}

// fill sets every exported field reachable from v to a non-zero value:
// pointers are allocated, slices get one element. A type already being
// filled higher up (a recursive type) is left zero below, so the fill ends.
func fill(t *testing.T, v reflect.Value, open map[reflect.Type]bool) {
	switch v.Kind() {
	case reflect.Struct:
		if open[v.Type()] {
			return
		}
		open[v.Type()] = true
		defer delete(open, v.Type())
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i), open)
			}
		}
	case reflect.Pointer:
		if open[v.Type().Elem()] {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), open)
	case reflect.Slice:
		if open[v.Type().Elem()] {
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(t, v.Index(0), open)
	case reflect.String:
		v.SetString("s")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(2)
	case reflect.Uint, reflect.Uint32, reflect.Uint64, reflect.Uint8:
		v.SetUint(2)
	case reflect.Float64:
		v.SetFloat(1.5)
	default:
		t.Fatalf("%s: kind %s not handled by fill", v.Type(), v.Kind())
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
