package proxywasm

import "testing"

// TestFreeListKeepsUpToItsBound: contexts come back last in, first out,
// a full list drops what it is given, and an emptied list reports none.
func TestFreeListKeepsUpToItsBound(t *testing.T) {
	var f FreeList[*int]
	if _, ok := f.Get(); ok {
		t.Fatal("an empty list handed a context out")
	}
	for i := range MaxFreeContexts + 10 {
		f.Put(&i)
	}
	if !f.Full() {
		t.Fatal("not full after more than MaxFreeContexts puts")
	}
	for want := MaxFreeContexts - 1; want >= 0; want-- {
		x, ok := f.Get()
		if !ok || *x != want {
			t.Fatalf("got %v, %v; want the context put as %d", x, ok, want)
		}
	}
	if _, ok := f.Get(); ok {
		t.Fatal("a context left over: the full list kept one it should have dropped")
	}
}
