// Package wasmhost runs proxy-wasm modules (ABI 0.2.1) under wazero the way
// Envoy's host, proxy-wasm-cpp-host, runs them. It is the host of the
// gateway data plane and of every filter test (through package wasmtest).
//
// # API
//
//   - Compile(ctx, wasm) -> *Module: one compiled module, shared by every
//     VM; safe for concurrent use. Module.Close releases it.
//   - Module.NewVM(ctx, Config) -> *VM: one instance per worker, started
//     as Envoy starts a plugin: _initialize, proxy_on_vm_start (root
//     context, VM configuration), proxy_on_context_create (root),
//     proxy_on_configure (plugin configuration). Calls into one VM are
//     serialised like a worker thread.
//   - Config: VMConfig, PluginConfig, Clusters (callout targets by Envoy
//     cluster name), Stats and Shared (give several VMs the same values to
//     share metrics and shared data as Envoy's workers do), Properties,
//     Clock, Logger.
//   - VM.NewStream -> *Stream: one HTTP stream context. Stream methods
//     deliver one callback each: RequestHeaders, RequestBody,
//     RequestTrailers, ResponseHeaders, ResponseBody, ResponseTrailers, and
//     Done (proxy_on_done, proxy_on_log, proxy_on_delete). Paused,
//     LocalResponse, RequestHeaderMap, RequestBodyBytes,
//     ResponseHeaderMap, ResponseBodyBytes read the stream's state;
//     AwaitResume delivers callout answers until a paused direction
//     resumes.
//   - VM.RoundTrip(ctx, cluster, Request) -> *Response: one request through
//     the filter with a real upstream, as Envoy would run it.
//   - VM.Tick, TickPeriod, AwaitCallouts, Logs, Stats, Shared,
//     MemoryBytes, Close.
//   - Stats / Metric: the stat store (proxy_define_metric and friends);
//     SharedData: proxy_get/set_shared_data with compare-and-swap.
//   - ErrStalled (a paused stream with no callout left to resume it),
//     ErrClosed (the VM was closed or trapped).
//
// Callouts (proxy_http_call, proxy_grpc_call) run on goroutines bound to
// the VM and are answered in later callbacks on the root context, as in
// Envoy; a trap fails the VM and it refuses every later call.
package wasmhost
