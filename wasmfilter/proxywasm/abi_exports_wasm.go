//go:build wasip1

package proxywasm

// The proxy_on_* callbacks of ABI 0.2.1. Every parameter is an i32 on the
// wire; booleans (end_of_stream) arrive as 0 or 1. The gRPC callouts'
// metadata callbacks (proxy_on_grpc_receive_initial_metadata and
// _trailing_metadata) are not exported: the binding has no use for them,
// and cpp-host, as Envoy runs it, calls only the callbacks a module
// exports, so each gRPC callout's answer costs two calls into the VM
// fewer.

//go:wasmexport proxy_abi_version_0_2_1
func proxyABIVersion021() {}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) uint32 { return vm.allocate(size) }

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(_, vmConfigurationSize uint32) uint32 {
	return vm.onVMStart(vmConfigurationSize)
}

//go:wasmexport proxy_on_configure
func proxyOnConfigure(rootID, size uint32) uint32 { return vm.onConfigure(rootID, size) }

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(id, parent uint32) { vm.onContextCreate(id, parent) }

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(id, n, eos uint32) uint32 { return vm.onRequestHeaders(id, n, eos) }

//go:wasmexport proxy_on_request_body
func proxyOnRequestBody(id, size, eos uint32) uint32 { return vm.onRequestBody(id, size, eos) }

//go:wasmexport proxy_on_request_trailers
func proxyOnRequestTrailers(id, n uint32) uint32 { return vm.onRequestTrailers(id, n) }

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(id, n, eos uint32) uint32 { return vm.onResponseHeaders(id, n, eos) }

//go:wasmexport proxy_on_response_body
func proxyOnResponseBody(id, size, eos uint32) uint32 { return vm.onResponseBody(id, size, eos) }

//go:wasmexport proxy_on_response_trailers
func proxyOnResponseTrailers(id, n uint32) uint32 { return vm.onResponseTrailers(id, n) }

//go:wasmexport proxy_on_http_call_response
func proxyOnHTTPCallResponse(_, token, numHeaders, bodySize, numTrailers uint32) {
	vm.onHTTPCallResponse(token, numHeaders, bodySize, numTrailers)
}

//go:wasmexport proxy_on_grpc_receive
func proxyOnGRPCReceive(_, token, size uint32) { vm.onGRPCReceive(token, size) }

//go:wasmexport proxy_on_grpc_close
func proxyOnGRPCClose(_, token, status uint32) { vm.onGRPCClose(token, status) }

//go:wasmexport proxy_on_tick
func proxyOnTick(rootID uint32) { vm.onTick(rootID) }

//go:wasmexport proxy_on_log
func proxyOnLog(id uint32) { vm.onLog(id) }

//go:wasmexport proxy_on_done
func proxyOnDone(id uint32) uint32 { return vm.onDone(id) }

//go:wasmexport proxy_on_delete
func proxyOnDelete(id uint32) { vm.onDelete(id) }

//go:wasmexport proxy_on_queue_ready
func proxyOnQueueReady(rootID, token uint32) { vm.onQueueReady(rootID, token) }
