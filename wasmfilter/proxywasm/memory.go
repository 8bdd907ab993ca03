package proxywasm

import "unsafe"

// addressOf is the wasm32 linear-memory address of b's first byte. Only
// meaningful inside wasm, where it is what the host sees.
func addressOf(b []byte) uint32 {
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// ptr returns a pointer to b's data for a host call, nil when empty. The
// call keeps b alive for its duration.
func ptr(b []byte) *byte {
	if len(b) == 0 {
		return nil
	}
	return unsafe.SliceData(b)
}

// strPtr is ptr for strings.
func strPtr(s string) *byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.StringData(s)
}
