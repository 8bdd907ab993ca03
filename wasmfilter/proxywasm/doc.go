// Package proxywasm is Maestro's guest-side binding of the proxy-wasm ABI
// 0.2.1, for filters built with the standard Go toolchain
// (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared).
//
// The module exports proxy_abi_version_0_2_1, proxy_on_memory_allocate and
// the proxy_on_* callbacks, and imports the env.proxy_* host calls. A filter
// registers its VMContext with SetVMContext from an init function (a
// c-shared module runs package initialisers from _initialize but never
// main.main) and then works through the typed API: PluginContext for the
// root context (configuration, ticks, callouts), HTTPContext per stream
// (headers, bodies, trailers, local responses), plus metrics, shared data,
// properties and logging.
//
// Names and semantics follow the proxy-wasm specification and Envoy's
// behaviour: header maps use the spec's serialisation (see SerializeMap),
// host status codes map to the sentinel errors in this package, and
// callout responses arrive in later callbacks, never by blocking.
//
// The binding is built for the per-request path, where Go's wasm backend
// makes every map operation and allocation expensive: strings from
// GetHeader, LookupHeader and GetHeaderMap point into the buffer the host
// filled rather than copying it (small buffers are carved from a shared
// chunk, which a kept value holds on to), LookupHeader reports an absent
// header without an error value, GetPropertyAt and LookupPropertyAt read a
// path serialized once with NewPropertyPath, and a plugin that implements
// HTTPContextRecycler gets each stream's context back when the host
// deletes the stream, to reuse it for the next one.
//
// Outside wasip1 the host calls return ErrUnimplemented, so code that
// imports this package still builds and its pure logic can be unit tested
// natively.
package proxywasm
