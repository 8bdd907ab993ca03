package model_test

import (
	"reflect"
	"strconv"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
)

// accessor finds one value inside a mesh.
type accessor func(m *model.Mesh) reflect.Value

// TestEqualSeesEveryField changes, one at a time, every field reachable
// from the sample mesh (and sets every nil pointer, and grows every slice)
// and checks that Equal and Hash both notice. A field added to a type but
// not to its Equal method fails here.
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
			walk(v.Elem(), func(m *model.Mesh) reflect.Value { return get(m).Elem() }, path)
		case reflect.Slice:
			elem := v.Type().Elem()
			add("+append", func(x reflect.Value) { x.Set(reflect.Append(x, reflect.Zero(elem))) })
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
	sample := modeltest.Sample(9000)
	walk(reflect.ValueOf(sample).Elem(), func(m *model.Mesh) reflect.Value { return reflect.ValueOf(m).Elem() }, "mesh")
	if len(muts) < 200 {
		t.Fatalf("only %d mutations found; the walk is broken", len(muts))
	}
	hash := sample.Hash()
	for _, mu := range muts {
		m := modeltest.Sample(9000)
		mu.mutate(m)
		if sample.Equal(m) || m.Equal(sample) {
			t.Errorf("%s: change not seen by Equal", mu.path)
		}
		if m.Hash() == hash {
			t.Errorf("%s: change not seen by Hash", mu.path)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
