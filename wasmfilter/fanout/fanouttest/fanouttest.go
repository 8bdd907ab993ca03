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
	return NewVMWith(tb, clusters, filterconfig.Fanout{Routes: []filterconfig.FanoutRoute{route}}, route.Route)
}

// NewVMWith starts fanout.wasm configured with cfg, where Envoy picked the
// route named routeName from the request headers ("" for none), its
// callouts going to clusters. The VM is closed when the test ends.
func NewVMWith(tb testing.TB, clusters map[string]wasmtest.Cluster, cfg filterconfig.Fanout, routeName string) *wasmtest.VM {
	tb.Helper()
	data, err := json.Marshal(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	props := map[string][]byte{}
	if routeName != "" {
		props["xds.route_name"] = []byte(routeName)
	}
	vm, err := wasmtest.Load(tb, Pkg).NewVM(tb.Context(), wasmtest.Config{
		PluginConfig: data,
		Clusters:     clusters,
		Properties:   props,
		// The fanout filter pauses in request headers (REST fan-out, model
		// routing) and reads the body: the translator sets
		// allow_on_headers_stop_iteration for it.
		AllowOnHeadersStopIteration: true,
	})
	if err != nil {
		tb.Fatalf("new vm: %v", err)
	}
	tb.Cleanup(func() { vm.Close() })
	return vm
}
