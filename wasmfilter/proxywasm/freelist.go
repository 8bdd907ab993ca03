package proxywasm

// MaxFreeContexts bounds the contexts a FreeList keeps: as many as a
// worker has streams in flight at once, up to this.
const MaxFreeContexts = 256

// FreeList keeps finished stream contexts for a plugin's
// HTTPContextRecycler to hand out again from NewHTTPContext.
type FreeList[T any] struct{ items []T }

// Get takes the context put last, or reports that none is kept.
func (f *FreeList[T]) Get() (T, bool) {
	var zero T
	n := len(f.items)
	if n == 0 {
		return zero, false
	}
	x := f.items[n-1]
	f.items[n-1] = zero // the list no longer holds it
	f.items = f.items[:n-1]
	return x, true
}

// Full reports whether a Put would drop its context: a recycler checks it
// before it resets a context for reuse.
func (f *FreeList[T]) Full() bool { return len(f.items) >= MaxFreeContexts }

// Put keeps x unless the list is full.
func (f *FreeList[T]) Put(x T) {
	if !f.Full() {
		f.items = append(f.items, x)
	}
}
