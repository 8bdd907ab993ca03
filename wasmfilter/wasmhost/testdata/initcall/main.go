// Command initcall is a proxy-wasm module that calls a proxy function from
// a Go init function, which runs inside _initialize: Envoy traps it there
// ("restricted_callback") and the module fails to load.
package main

import pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"

func init() {
	pw.SetVMContext(pw.DefaultVMContext{})
	// Logging is on cpp-host's allow-list; defining a metric is not.
	pw.LogInfo("initcall: init runs")
	if _, err := pw.DefineCounter("initcall_total"); err != nil {
		pw.LogError(err.Error())
	}
}

func main() {}
