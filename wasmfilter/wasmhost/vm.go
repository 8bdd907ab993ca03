package wasmhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
	"google.golang.org/grpc"

	"github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// Cluster is where callouts (and RoundTrip) to one Envoy cluster name go.
type Cluster struct {
	// Address is host:port of a real server, normally 127.0.0.1:<port>.
	Address string
	// HTTP2 makes HTTP requests speak cleartext HTTP/2 (prior knowledge),
	// as Envoy does to a gRPC upstream. gRPC callouts always use HTTP/2.
	HTTP2 bool
}

// Config describes one VM and its plugin.
type Config struct {
	// VMConfig and PluginConfig are what GetVMConfiguration and
	// GetPluginConfiguration return.
	VMConfig, PluginConfig []byte
	// Clusters maps Envoy cluster names to real servers.
	Clusters map[string]Cluster
	// Stats and Shared are shared between VMs when the same value is given
	// to several; nil gives the VM its own.
	Stats  *Stats
	Shared *SharedData
	// Properties answers proxy_get_property, keyed by the path joined with
	// "." ("plugin_name", "node.id").
	Properties map[string][]byte
	// Clock, when set, is the guest's wall and monotonic clock (WASI
	// clock_time_get), so tests can move time; it must never go backwards.
	Clock func() time.Time
	// Logger, when set, also receives the guest's proxy_log lines.
	Logger *slog.Logger
}

// Errors from driving a VM.
var (
	// ErrStalled: a stream is paused and no callout is left to resume it.
	ErrStalled = errors.New("stream paused with no callout in flight")
	// ErrClosed: the VM was closed or trapped.
	ErrClosed = errors.New("vm closed")
)

// VM is one instance of a Module: one Envoy worker thread's copy of the
// plugin, with its root context created and configured.
type VM struct {
	mu     sync.Mutex // serialises calls into the guest, like a worker thread
	cfg    Config
	mod    api.Module
	ctx    context.Context // carries the VM for host functions
	cancel context.CancelFunc
	stderr bytes.Buffer
	fns    map[string]api.Function
	stack  [8]uint64 // argument and result slots for call

	trapped   error // the first trap; the VM refuses calls after it
	rootID    uint32
	nextID    uint32
	effective uint32
	streams   map[uint32]*Stream
	metrics   []*Metric // metric id - 1 -> metric
	logs      []LogEntry
	tick      time.Duration

	// callouts
	nextToken  uint32
	inflight   int
	results    chan calloutResult
	wg         sync.WaitGroup
	httpClient *http.Client
	h2Client   *http.Client
	grpcConns  map[string]*grpc.ClientConn
	callResp   *calloutResult // the answer visible during its callback
	cancelled  map[uint32]bool
	grpcStatus struct {
		code uint32
		msg  string
	}
}

type vmKey struct{}

// NewVM instantiates the module and runs Envoy's start-up sequence:
// _initialize, proxy_on_vm_start, proxy_on_context_create(root),
// proxy_on_configure.
//
// # Errors
// The instance traps, or the filter rejects its VM or plugin configuration.
func (m *Module) NewVM(ctx context.Context, cfg Config) (*VM, error) {
	if cfg.Stats == nil {
		cfg.Stats = NewStats()
	}
	if cfg.Shared == nil {
		cfg.Shared = NewSharedData()
	}
	vmCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	vm := &VM{
		cfg:       cfg,
		cancel:    cancel,
		streams:   map[uint32]*Stream{},
		results:   make(chan calloutResult, 64),
		grpcConns: map[string]*grpc.ClientConn{},
		fns:       map[string]api.Function{},
		rootID:    1,
		nextID:    2,
	}
	vm.ctx = context.WithValue(vmCtx, vmKey{}, vm)
	vm.httpClient, vm.h2Client = newHTTPClients()

	mc := wazero.NewModuleConfig().
		WithName(fmt.Sprintf("vm-%d", m.seq.Add(1))).
		WithStartFunctions("_initialize").
		WithStderr(&vm.stderr).WithStdout(&vm.stderr)
	if cfg.Clock != nil {
		clock := cfg.Clock
		mc = mc.WithWalltime(func() (int64, int32) {
			t := clock()
			return t.Unix(), int32(t.Nanosecond())
		}, sys.ClockResolution(1)).WithNanotime(func() int64 { return clock().UnixNano() }, sys.ClockResolution(1))
	} else {
		mc = mc.WithSysWalltime().WithSysNanotime()
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	mod, err := m.runtime.InstantiateModule(vm.ctx, m.compiled, mc)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("instantiate: %w%s", err, vm.stderrNote())
	}
	vm.mod = mod
	fail := func(err error) (*VM, error) {
		vm.closeLocked()
		return nil, err
	}
	if _, err := vm.call("proxy_abi_version_0_2_1"); err != nil {
		return fail(err)
	}
	vm.effective = vm.rootID
	ok, err := vm.call("proxy_on_vm_start", uint64(vm.rootID), uint64(len(cfg.VMConfig)))
	if err != nil {
		return fail(err)
	}
	if ok == 0 {
		return fail(fmt.Errorf("proxy_on_vm_start rejected the vm configuration%s", vm.logNote()))
	}
	if _, err := vm.call("proxy_on_context_create", uint64(vm.rootID), 0); err != nil {
		return fail(err)
	}
	ok, err = vm.call("proxy_on_configure", uint64(vm.rootID), uint64(len(cfg.PluginConfig)))
	if err != nil {
		return fail(err)
	}
	if ok == 0 {
		return fail(fmt.Errorf("proxy_on_configure rejected the plugin configuration%s", vm.logNote()))
	}
	return vm, nil
}

// call invokes a guest export with vm.mu held. Optional exports the module
// lacks are skipped and return 0, as Envoy skips them.
func (vm *VM) call(name string, args ...uint64) (uint64, error) {
	if vm.mod == nil || vm.mod.IsClosed() {
		return 0, ErrClosed
	}
	if vm.trapped != nil {
		return 0, fmt.Errorf("%w: trapped earlier: %w", ErrClosed, vm.trapped)
	}
	f, ok := vm.fns[name]
	if !ok {
		f = vm.mod.ExportedFunction(name)
		vm.fns[name] = f
	}
	if f == nil {
		return 0, nil
	}
	// CallWithStack on a VM-owned array spares an allocation per call;
	// calls are serialised by vm.mu and host functions never re-enter call.
	stack := vm.stack[:max(len(args), 1)]
	copy(stack, args)
	err := f.CallWithStack(vm.ctx, stack)
	if err != nil {
		// A trap leaves the guest's runtime in an unknown state, as in
		// Envoy, which then fails the VM: nothing else runs in it.
		vm.trapped = fmt.Errorf("module function[%s] failed: %w%s", name, err, vm.stderrNote())
		return 0, vm.trapped
	}
	if len(f.Definition().ResultTypes()) == 0 {
		return 0, nil
	}
	return stack[0], nil
}

func (vm *VM) stderrNote() string {
	if s := strings.TrimSpace(vm.stderr.String()); s != "" {
		return ": guest stderr: " + s
	}
	return ""
}

func (vm *VM) logNote() string {
	if len(vm.logs) == 0 {
		return ""
	}
	return ": last log: " + vm.logs[len(vm.logs)-1].Message
}

// Tick runs proxy_on_tick on the root context, as Envoy's timer does.
func (vm *VM) Tick() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.effective = vm.rootID
	_, err := vm.call("proxy_on_tick", uint64(vm.rootID))
	return err
}

// TickPeriod is the period the guest last set (0: no ticks).
func (vm *VM) TickPeriod() time.Duration {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.tick
}

// Logs returns the proxy_log lines so far.
func (vm *VM) Logs() []LogEntry {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]LogEntry(nil), vm.logs...)
}

// Stats is the VM's stat store.
func (vm *VM) Stats() *Stats { return vm.cfg.Stats }

// Shared is the VM's shared-data store.
func (vm *VM) Shared() *SharedData { return vm.cfg.Shared }

// MemoryBytes is the guest's linear memory size.
func (vm *VM) MemoryBytes() uint32 {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.mod == nil || vm.mod.IsClosed() {
		return 0
	}
	return vm.mod.Memory().Size()
}

// Close shuts the plugin down (proxy_on_done, proxy_on_delete on the root
// context), cancels callouts in flight and waits for their goroutines.
func (vm *VM) Close() error {
	vm.mu.Lock()
	var err error
	if vm.mod != nil && !vm.mod.IsClosed() && vm.trapped == nil {
		vm.effective = vm.rootID
		if _, e := vm.call("proxy_on_done", uint64(vm.rootID)); e != nil {
			err = e
		} else if _, e := vm.call("proxy_on_delete", uint64(vm.rootID)); e != nil {
			err = e
		}
	}
	vm.closeLocked()
	vm.mu.Unlock()
	vm.wg.Wait()
	return err
}

func (vm *VM) closeLocked() {
	vm.cancel()
	if vm.mod != nil {
		vm.mod.Close(context.Background())
	}
	for _, c := range vm.grpcConns {
		c.Close()
	}
	vm.grpcConns = map[string]*grpc.ClientConn{}
	vm.httpClient.CloseIdleConnections()
	vm.h2Client.CloseIdleConnections()
}

// AwaitCallouts delivers callout answers until none is in flight.
//
// # Errors
// ctx ends first, or a callback traps.
func (vm *VM) AwaitCallouts(ctx context.Context) error {
	for {
		vm.mu.Lock()
		n := vm.inflight
		vm.mu.Unlock()
		if n == 0 {
			return nil
		}
		if err := vm.deliverNext(ctx); err != nil {
			return err
		}
	}
}

// deliverNext waits for one callout answer and runs its callback.
func (vm *VM) deliverNext(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("await callouts: %w", ctx.Err())
	case r := <-vm.results:
		vm.mu.Lock()
		defer vm.mu.Unlock()
		vm.inflight--
		return vm.deliver(r)
	}
}

func (vm *VM) logf(level proxywasm.LogLevel, id uint32, msg string) {
	vm.logs = append(vm.logs, LogEntry{Level: level, Message: msg, ContextID: id})
	if vm.cfg.Logger != nil {
		vm.cfg.Logger.Log(vm.ctx, slogLevel(level), msg, "context_id", id)
	}
}

func slogLevel(l proxywasm.LogLevel) slog.Level {
	switch l {
	case proxywasm.LogLevelTrace, proxywasm.LogLevelDebug:
		return slog.LevelDebug
	case proxywasm.LogLevelInfo:
		return slog.LevelInfo
	case proxywasm.LogLevelWarn:
		return slog.LevelWarn
	}
	return slog.LevelError
}
