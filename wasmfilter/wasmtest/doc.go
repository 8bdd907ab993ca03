// Package wasmtest is the test helper for proxy-wasm filters: it builds a
// filter's main package to a .wasm (Build) and compiles it once per test
// binary (Load), so every test instantiates VMs from the same compiled
// Module. The host itself, which drives the module the way Envoy does, is
// package wasmhost; the names below are aliases kept so that filter tests
// read wasmtest.Config, wasmtest.Request and so on.
package wasmtest
