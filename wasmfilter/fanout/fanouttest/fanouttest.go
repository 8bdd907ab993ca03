// Package fanouttest runs the real fanout.wasm in the wasmtest host for
// tests of the filter and of the mesh around it.
package fanouttest

import (
	"encoding/json"
	"testing"

	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// Pkg is the main package of fanout.wasm.
const Pkg = "github.com/maestro-ml/maestro/wasmfilter/fanout/cmd"

// NewVM starts fanout.wasm configured with route alone, selected through
// Envoy's xds.route_name property, its callouts going to clusters. The VM
// is closed when the test ends.
func NewVM(tb testing.TB, clusters map[string]wasmtest.Cluster, route filterconfig.FanoutRoute) *wasmtest.VM {
	tb.Helper()
	cfg, err := json.Marshal(filterconfig.Fanout{Routes: []filterconfig.FanoutRoute{route}})
	if err != nil {
		tb.Fatal(err)
	}
	vm, err := wasmtest.Load(tb, Pkg).NewVM(tb.Context(), wasmtest.Config{
		PluginConfig: cfg,
		Clusters:     clusters,
		Properties:   map[string][]byte{"xds.route_name": []byte(route.Route)},
		// REST fan-out pauses in request headers and answers from the body:
		// the translator sets allow_on_headers_stop_iteration for fanout.
		AllowOnHeadersStopIteration: true,
	})
	if err != nil {
		tb.Fatalf("new vm: %v", err)
	}
	tb.Cleanup(func() { vm.Close() })
	return vm
}
