package wasmhost

import (
	"bytes"
	"testing"

	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// The host encodes header maps into a reused buffer; the bytes must be
// the ABI's, as the guest SDK's SerializeMap writes them, whatever the
// buffer held before.
func TestAppendMapIsSerializeMap(t *testing.T) {
	buf := []byte("stale bytes from the last call")
	for _, pairs := range [][][2]string{
		nil,
		{{":status", "200"}},
		{{":path", "/a"}, {"x-empty", ""}, {"", "v"}, {"content-type", "application/grpc"}},
	} {
		buf = appendMap(buf[:0], pairs)
		if want := pw.SerializeMap(pairs); !bytes.Equal(buf, want) {
			t.Errorf("%v: got % x, want % x", pairs, buf, want)
		}
	}
}

// Property paths are interned from a reused buffer: each answer must be
// the path the buffer held at that call, never a later one, and past the
// bound a path is still answered, just not kept.
func TestInternKeepsEachPath(t *testing.T) {
	vm := &VM{}
	buf := []byte("route_name")
	a := vm.intern(buf)
	copy(buf, "plugin_nam")
	if a != "route_name" || vm.intern(buf) != "plugin_nam" || vm.intern([]byte("route_name")) != "route_name" {
		t.Fatalf("interned %q, then %q", a, vm.intern(buf))
	}
	for i := range 2 * maxKeys {
		k := []byte{byte(i), byte(i >> 8)}
		if got := vm.intern(k); got != string(k) {
			t.Fatalf("path %x answered as %x", k, got)
		}
	}
	if len(vm.keys) > maxKeys {
		t.Fatalf("%d paths kept, bound %d", len(vm.keys), maxKeys)
	}
}
