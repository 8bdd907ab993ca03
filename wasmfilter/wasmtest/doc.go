// Package wasmtest runs a real proxy-wasm .wasm module under wazero and
// drives it the way Envoy does, for tests. It is a test tool, not a proxy.
//
// A Module is compiled once per test binary (Load) and instantiated per
// test (Module.NewVM). A VM goes through Envoy's start-up sequence
// (_initialize, proxy_on_vm_start, proxy_on_context_create for the root
// context, proxy_on_configure), then serves streams: one context per
// stream, header/body/trailer callbacks with end-of-stream flags, pause and
// continue, local responses, and proxy_on_done / proxy_on_log /
// proxy_on_delete at the end. Callouts (proxy_http_call, proxy_grpc_call)
// go to real servers chosen by cluster name from Config.Clusters; their
// answers are delivered in later callbacks while the test waits
// (VM.AwaitCallouts, Stream.AwaitResume, VM.RoundTrip). Metrics (Stats) and
// shared data (SharedData) can be shared by several VMs, as Envoy shares
// them across worker threads; logs are collected per VM.
//
// Calls into one VM are serialised, like a worker thread; callouts run on
// goroutines bound to the VM's lifetime and report back over a channel.
package wasmtest
