package wasmhost

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Module is a compiled proxy-wasm module with its own wazero runtime, WASI
// and env host modules. It is safe for concurrent use; each VM is an
// independent instance.
type Module struct {
	runtime  wazero.Runtime
	compiled wazero.CompiledModule
	size     int
	seq      atomic.Uint64
}

// Compile compiles a proxy-wasm module. A compilation cache in the system
// temp directory makes later test binaries skip most of the work.
//
// # Errors
// The module fails to compile, imports a function the host (cpp-host's set,
// with cpp-host's signatures) does not export, or does not export what the
// ABI requires.
func Compile(ctx context.Context, wasm []byte) (*Module, error) {
	cfg := wazero.NewRuntimeConfig()
	if cache, err := wazero.NewCompilationCacheWithDir(filepath.Join(os.TempDir(), "maestro-wazero-cache")); err == nil {
		cfg = cfg.WithCompilationCache(cache)
	}
	r := wazero.NewRuntimeWithConfig(ctx, cfg)
	if err := instantiateWASI(ctx, r); err != nil {
		r.Close(ctx)
		return nil, err
	}
	if err := instantiateEnv(ctx, r); err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("instantiate env: %w", err)
	}
	c, err := r.CompileModule(ctx, wasm)
	if err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("compile module: %w", err)
	}
	if err := checkImports(r, c); err != nil {
		r.Close(ctx)
		return nil, err
	}
	exports := c.ExportedFunctions()
	for _, name := range []string{"_initialize", "proxy_abi_version_0_2_1", "proxy_on_memory_allocate",
		"proxy_on_vm_start", "proxy_on_configure", "proxy_on_context_create"} {
		if _, ok := exports[name]; !ok {
			r.Close(ctx)
			return nil, fmt.Errorf("module does not export %s", name)
		}
	}
	return &Module{runtime: r, compiled: c, size: len(wasm)}, nil
}

// Size is the .wasm size in bytes.
func (m *Module) Size() int { return m.size }

// Close releases the runtime and every VM still open on it.
func (m *Module) Close(ctx context.Context) error { return m.runtime.Close(ctx) }

// checkImports fails, naming the function, when the module imports what
// the host does not export or with another signature, as linking fails in
// Envoy.
func checkImports(r wazero.Runtime, c wazero.CompiledModule) error {
	hosts := map[string]api.Module{}
	for _, f := range c.ImportedFunctions() {
		module, name, _ := f.Import()
		h, ok := hosts[module]
		if !ok {
			h = r.Module(module)
			hosts[module] = h
		}
		if h == nil {
			return fmt.Errorf("module imports %s.%s: the host has no module %q", module, name, module)
		}
		exp, ok := h.ExportedFunctionDefinitions()[name]
		if !ok {
			return fmt.Errorf("module imports %s.%s, which the host does not export", module, name)
		}
		if !sameTypes(exp.ParamTypes(), f.ParamTypes()) || !sameTypes(exp.ResultTypes(), f.ResultTypes()) {
			return fmt.Errorf("module imports %s.%s with signature %v -> %v, the host exports %v -> %v",
				module, name, f.ParamTypes(), f.ResultTypes(), exp.ParamTypes(), exp.ResultTypes())
		}
	}
	return nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
