package wasmhost

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
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
// The module fails to compile, or does not export what the ABI requires.
func Compile(ctx context.Context, wasm []byte) (*Module, error) {
	cfg := wazero.NewRuntimeConfig()
	if cache, err := wazero.NewCompilationCacheWithDir(filepath.Join(os.TempDir(), "maestro-wazero-cache")); err == nil {
		cfg = cfg.WithCompilationCache(cache)
	}
	r := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("instantiate wasi: %w", err)
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
