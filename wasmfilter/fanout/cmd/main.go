// Command fanout is the fanout proxy-wasm filter, built with
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared (make wasm). A
// c-shared module runs package initialisers from _initialize and never
// main.main, so the filter is registered in init.
package main

import (
	"github.com/maestro-ml/maestro/wasmfilter/fanout"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

func init() { pw.SetVMContext(fanout.New()) }

func main() {}
