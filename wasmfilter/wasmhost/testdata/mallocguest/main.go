// Command mallocguest is a bare proxy-wasm module (no binding, so that it
// owns proxy_on_memory_allocate) whose allocator calls proxy_define_metric:
// cpp-host allows only logging, stdout/stderr, the clock and poll_oneoff
// inside the allocator, so the call traps with "restricted_callback" when
// the host hands the plugin configuration to proxy_on_configure.
package main

import "unsafe"

//go:wasmimport env proxy_get_buffer_bytes
func getBufferBytes(bufferType, start, maxSize int32, ptr, size unsafe.Pointer) int32

//go:wasmimport env proxy_define_metric
func defineMetric(metricType int32, name unsafe.Pointer, nameSize int32, id unsafe.Pointer) int32

// keep holds every buffer handed to the host, so the GC never frees one
// the host is still writing.
var keep [][]byte

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func allocate(size uint32) uint32 {
	name := "allocated_total"
	var id uint32
	defineMetric(0, unsafe.Pointer(unsafe.StringData(name)), int32(len(name)), unsafe.Pointer(&id))
	b := make([]byte, size)
	keep = append(keep, b)
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

//go:wasmexport proxy_on_context_create
func contextCreate(id, parent uint32) {}

//go:wasmexport proxy_on_vm_start
func vmStart(root, size uint32) uint32 { return 1 }

//go:wasmexport proxy_on_configure
func configure(root, size uint32) uint32 {
	var ptr, n uint32
	const pluginConfiguration = 7
	getBufferBytes(pluginConfiguration, 0, int32(size), unsafe.Pointer(&ptr), unsafe.Pointer(&n))
	return 1
}

func main() {}
