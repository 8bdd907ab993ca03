package wasmtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/wasmfilter/wasmhost"
)

// EnvWasmDir names the variable pointing at prebuilt modules
// (build/wasm after `make wasm`); Build reuses <dir>/<name>.wasm from there.
const EnvWasmDir = "MAESTRO_WASM_DIR"

// buildTimeout bounds one `go build` of a filter, generously: the machine is
// shared and a cold build cache compiles the whole standard library.
const buildTimeout = 5 * time.Minute

// memo makes Build and Load run once per package per test binary; every
// test then instantiates from the same compiled module.
var memo = struct {
	sync.Mutex
	wasm    map[string][]byte
	modules map[string]*Module
}{wasm: map[string][]byte{}, modules: map[string]*Module{}}

// FilterName is the .wasm name for a filter main package:
// "github.com/maestro-ml/maestro/wasmfilter/slo/cmd" -> "slo".
func FilterName(pkg string) string {
	p := path.Clean(strings.TrimSuffix(pkg, "/"))
	if path.Base(p) == "cmd" {
		p = path.Dir(p)
	}
	return path.Base(p)
}

// Build returns the bytes of the filter main package pkg compiled to
// wasip1 c-shared, building it at most once per test binary. With
// MAESTRO_WASM_DIR set and <dir>/<name>.wasm present, that file is used.
func Build(tb testing.TB, pkg string) []byte {
	tb.Helper()
	memo.Lock()
	defer memo.Unlock()
	if b, ok := memo.wasm[pkg]; ok {
		return b
	}
	b, err := build(pkg)
	if err != nil {
		tb.Fatalf("wasmtest: %v", err)
	}
	memo.wasm[pkg] = b
	return b
}

func build(pkg string) ([]byte, error) {
	if dir := os.Getenv(EnvWasmDir); dir != "" {
		f := filepath.Join(dir, FilterName(pkg)+".wasm")
		if b, err := os.ReadFile(f); err == nil {
			return b, nil
		}
	}
	tmp, err := os.MkdirTemp("", "maestro-wasm-")
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", pkg, err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, FilterName(pkg)+".wasm")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("build %s: %w: %s", pkg, err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", pkg, err)
	}
	return b, nil
}

// Load builds (Build) and compiles the filter main package pkg, once per
// test binary, and returns the shared Module.
func Load(tb testing.TB, pkg string) *Module {
	tb.Helper()
	b := Build(tb, pkg)
	memo.Lock()
	defer memo.Unlock()
	if m, ok := memo.modules[pkg]; ok {
		return m
	}
	m, err := wasmhost.Compile(context.Background(), b)
	if err != nil {
		tb.Fatalf("wasmtest: compile %s: %v", pkg, err)
	}
	memo.modules[pkg] = m
	return m
}
