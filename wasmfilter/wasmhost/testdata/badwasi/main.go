// Command badwasi is a proxy-wasm module that imports a WASI function
// cpp-host does not export (sock_open), so it cannot link in Envoy.
package main

import pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"

//go:wasmimport wasi_snapshot_preview1 sock_open
func sockOpen(af, socktype, fdPtr int32) int32

func init() { pw.SetVMContext(vmContext{}) }

func main() {}

type vmContext struct{ pw.DefaultVMContext }

func (vmContext) NewPluginContext(uint32) pw.PluginContext { return plugin{} }

type plugin struct{ pw.DefaultPluginContext }

func (plugin) NewHTTPContext(uint32) pw.HTTPContext { return stream{} }

type stream struct{ pw.DefaultHTTPContext }

func (stream) OnHTTPRequestHeaders(int, bool) pw.Action {
	if sockOpen(1, 1, 0) != 0 {
		pw.LogError("sock_open failed")
	}
	return pw.ActionContinue
}
