// Package wasmhost runs proxy-wasm modules (ABI 0.2.1) under wazero the way
// Envoy's host, proxy-wasm-cpp-host, runs them. It is the host of the
// gateway data plane and of every filter test (through package wasmtest).
// Every rule that differs from a plain WASI runtime comes from cpp-host or
// Envoy (docs/filters.md lists them with their tests).
//
// # API
//
//   - Compile(ctx, wasm) -> *Module: one compiled module, shared by every
//     VM, safe for concurrent use; it fails, naming the import, when the
//     module imports what cpp-host does not export. Module.Close, Size.
//   - Module.NewVM(ctx, Config) -> *VM: one instance per worker, started
//     as cpp-host starts a plugin: _initialize (restricted host calls),
//     proxy_on_context_create (root), proxy_on_vm_start,
//     proxy_on_configure. Calls into one VM are serialised like a worker
//     thread.
//   - Config: VMConfig, PluginConfig; Upstreams (or Clusters for a
//     StaticUpstreams); AllowOnHeadersStopIteration and FailOpen (Envoy's
//     PluginConfig fields); Stats, Shared, Queues (give several VMs the
//     same values to share them as Envoy's workers do) and VMID;
//     Properties, Clock, Logger, Trace.
//   - Upstreams (HasCluster, HTTP, GRPC) is how callouts and RoundTrip
//     reach clusters; GRPCCall is one unary call; StaticUpstreams /
//     NewStaticUpstreams / Close map names to fixed addresses (Cluster).
//   - VM.NewStream, VM.OpenStream(StreamOptions{Properties,
//     OnRouteCacheCleared}) -> *Stream. Stream methods deliver one callback
//     each and return the guest's answer: RequestHeaders, RequestBody,
//     RequestTrailers, ResponseHeaders, ResponseBody, ResponseTrailers,
//     Done (proxy_on_log, proxy_on_done, proxy_on_delete). State: Paused,
//     Holding (data held under stop-all-iteration), LocalResponse,
//     RouteCacheCleared, RequestHeaderMap, RequestBodyBytes,
//     ResponseHeaderMap, ResponseBodyBytes, SetProperty, ID. AwaitResume
//     delivers callout answers until a paused direction resumes. For an
//     embedder that buffers whole messages, Request and Response deliver a
//     direction's callbacks in one call and RequestResult and
//     ResponseResult read its outcome, sharing lists and bodies rather
//     than copying them.
//   - VM.RoundTrip(ctx, cluster, Request) -> *Response: one request through
//     the filter and a real upstream, as Envoy would run it (LocalResponse
//     for the filter's own answers).
//   - VM.Failed, VM.FailOpen and FailClosedResponse: after a trap the VM
//     runs no guest code; streams pass through (fail-open) or get Envoy's
//     503 "wasm_fail_stream" reply. A stream callback that traps returns
//     an error wrapping ErrClosed; NewStream on a failed VM returns
//     ErrClosed.
//   - VM.Tick, TickPeriod, AwaitCallouts, DeliverQueueReady, Logs, Stats,
//     Shared, MemoryBytes, Close.
//   - Stats / Metric, SharedData, SharedQueues, LogEntry: the stores.
//   - Errors: ErrStalled (a paused stream with nothing left to resume it),
//     ErrClosed (closed or failed VM), ErrRestrictedCallback (a host call
//     where cpp-host forbids it).
//
// Callouts run on goroutines bound to the VM and are answered in later
// callbacks on the root context, as in Envoy. The embedder's callbacks
// (Upstreams methods, OnRouteCacheCleared, Properties) must not call back
// into the VM that called them.
package wasmhost
