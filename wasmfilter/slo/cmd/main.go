// Command slo is the SLO-metering proxy-wasm filter, built with
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared (make wasm).
package main

import "github.com/maestro-ml/maestro/wasmfilter/slo"

// A c-shared module runs init from _initialize; main never runs.
func init() { slo.Register() }

func main() {}
