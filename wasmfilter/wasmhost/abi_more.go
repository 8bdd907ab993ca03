package wasmhost

import (
	"context"
	"encoding/binary"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// maxBufferType and maxMapType are cpp-host's WasmBufferType::MAX and
// WasmHeaderMapType::MAX.
const (
	maxBufferType = 8
	maxMapType    = 7
)

// defineMore registers the rest of what cpp-host exports to an ABI 0.2.1
// module, so that any module that links in Envoy links here.
func defineMore(b wazero.HostModuleBuilder, def func(string, []api.ValueType, hostFn)) {
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
		stack[0] = flag(u32(stack[0]) == u32(stack[1]))
	}), i32s(2), []api.ValueType{i32}).Export("pthread_equal")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {}),
		i32s(1), nil).Export("emscripten_notify_memory_growth")
	def("proxy_get_header_map_size", i32s(2), hostGetHeaderMapSize)
	def("proxy_get_buffer_status", i32s(3), hostGetBufferStatus)
	def("proxy_register_shared_queue", i32s(3), hostRegisterSharedQueue)
	def("proxy_resolve_shared_queue", i32s(5), hostResolveSharedQueue)
	def("proxy_enqueue_shared_queue", i32s(3), hostEnqueueSharedQueue)
	def("proxy_dequeue_shared_queue", i32s(3), hostDequeueSharedQueue)
	// gRPC streams are not supported by this host: a module may link, and
	// opening one fails with Unimplemented (Envoy would open it).
	def("proxy_grpc_stream", i32s(9), func(context.Context, *VM, api.Module, []uint64) pw.Status {
		return pw.StatusUnimplemented
	})
	// No token is a stream's, so sending is BadArgument as in Envoy; close
	// on a call token cancels it, as Envoy's grpcClose does.
	def("proxy_grpc_send", i32s(4), func(context.Context, *VM, api.Module, []uint64) pw.Status {
		return pw.StatusBadArgument
	})
	def("proxy_grpc_close", i32s(1), hostGRPCCancel)
	// No foreign functions are registered: NotFound, as cpp-host answers
	// for a name it does not know.
	def("proxy_call_foreign_function", i32s(6), func(context.Context, *VM, api.Module, []uint64) pw.Status {
		return pw.StatusNotFound
	})
}

// hostGetHeaderMapSize is Envoy's getHeaderMapSize: the map's byte size
// (keys and values), BadArgument when the map does not exist.
func hostGetHeaderMapSize(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	if u32(p[0]) > maxMapType {
		return pw.StatusBadArgument
	}
	hm, ok := vm.headerMap(pw.MapType(u32(p[0])), true)
	if !ok {
		return pw.StatusBadArgument
	}
	n := 0
	for _, kv := range *hm {
		n += len(kv[0]) + len(kv[1])
	}
	return okIf(m.Memory().WriteUint32Le(u32(p[1]), uint32(n)))
}

// hostGetBufferStatus is cpp-host's get_buffer_status: length, flags 0.
func hostGetBufferStatus(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	if u32(p[0]) > maxBufferType {
		return pw.StatusBadArgument
	}
	buf, _, ok := vm.buffer(pw.BufferType(u32(p[0])))
	if !ok {
		return pw.StatusNotFound
	}
	if !m.Memory().WriteUint32Le(u32(p[1]), uint32(len(*buf))) || !m.Memory().WriteUint32Le(u32(p[2]), 0) {
		return pw.StatusInvalidMemoryAccess
	}
	return pw.StatusOK
}

// appendMap appends pairs in the proxy-wasm map format (the encoding of
// proxywasm.SerializeMap): a little-endian uint32 count, then count pairs
// of uint32 key and value sizes, then every key and value followed by a
// NUL byte.
func appendMap(b []byte, pairs [][2]string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(pairs)))
	for _, p := range pairs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p[0])))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p[1])))
	}
	for _, p := range pairs {
		b = append(append(b, p[0]...), 0)
		b = append(append(b, p[1]...), 0)
	}
	return b
}
