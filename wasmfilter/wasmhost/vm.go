package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// Cluster is where callouts (and RoundTrip) to one Envoy cluster name go,
// for StaticUpstreams.
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
	// Upstreams routes callouts and RoundTrip to clusters. When nil, the VM
	// uses StaticUpstreams over Clusters.
	Upstreams Upstreams
	// Clusters maps Envoy cluster names to real servers, used when
	// Upstreams is nil.
	Clusters map[string]Cluster
	// AllowOnHeadersStopIteration is Envoy's PluginConfig field of that
	// name (Envoy >= 1.35, default false). Without it a pause returned from
	// request or response headers becomes stop-all-iteration: the body is
	// held by the host and not given to the filter until it continues the
	// stream. With it the pause stops only the headers and body callbacks
	// still run.
	AllowOnHeadersStopIteration bool
	// FailOpen is Envoy's PluginConfig failure policy: once the VM has
	// failed, streams pass through without the filter. When false they are
	// answered with FailClosedResponse. Envoy's failure_policy maps as:
	// FAIL_OPEN (or the deprecated fail_open) to true; FAIL_CLOSED and
	// UNSPECIFIED (default FAIL_CLOSED) to false; FAIL_RELOAD to false,
	// the embedder starting a new VM from the Module for new requests
	// once VM.Failed reports a trap. A VM whose proxy_on_vm_start or
	// proxy_on_configure returns false is never made (NewVM fails): Envoy
	// rejects that configuration.
	FailOpen bool
	// Stats and Shared are shared between VMs when the same value is given
	// to several; nil gives the VM its own.
	Stats  *Stats
	Shared *SharedData
	Queues *SharedQueues
	// VMID is Envoy's vm_config.vm_id, the namespace of shared queues.
	VMID string
	// Properties answers proxy_get_property, keyed by the path joined with
	// "." ("plugin_name", "node.id"), after the stream's own properties.
	Properties map[string][]byte
	// Clock, when set, is the guest's wall and monotonic clock (WASI
	// clock_time_get), so tests can move time; it must never go backwards.
	Clock func() time.Time
	// Logger, when set, also receives the guest's proxy_log lines.
	Logger *slog.Logger
	// Trace, when set, is called with the name of each guest export the
	// host is about to call (proxy_on_memory_allocate excepted), like
	// cpp-host's "[host->vm]" trace log; for debugging and tests.
	Trace func(export string)
}

// Errors from driving a VM.
var (
	// ErrStalled: a stream is paused and no callout is left to resume it.
	ErrStalled = errors.New("stream paused with no callout in flight")
	// ErrClosed: the VM was closed or has failed (trapped).
	ErrClosed = errors.New("vm closed")
)

// VM is one instance of a Module: one Envoy worker thread's copy of the
// plugin, with its root context created and configured.
type VM struct {
	mu     sync.Mutex // serialises calls into the guest, like a worker thread
	cfg    Config
	mod    api.Module
	ctx    context.Context // the embedder's values, cancelled when the VM closes
	cancel context.CancelFunc
	// callCtx is what guest calls run with: it carries only the VM, which
	// host functions look up in it. Every guest call makes wazero look up
	// keys it does not find, which walks the whole context chain; the
	// embedder's chain (vm.ctx) is several contexts deep.
	callCtx context.Context
	fns     [numExports]export
	stack   [8]uint64 // argument and result slots for call
	// allocStack and propKey are reused by host calls made on every
	// request (guestAlloc, hostGetProperty).
	allocStack [1]uint64
	propKey    []byte
	// keys interns the property paths handed to a stream's Properties
	// function: a guest asks for the same few on every request, and a
	// string made from propKey for each call would be an allocation.
	keys    map[string]string
	mapBuf  []byte // hostGetHeaderMapPairs' encoding, copied into the guest
	none    []byte // buffer's empty buffer
	started time.Time
	allowed map[string]bool // nil: every host call allowed
	// stopNext is cpp-host's stopNextIteration: a local response sent in
	// a callback makes its answer a stop.
	stopNext bool
	// configuring is true during proxy_on_configure, the only time Envoy
	// gives out the plugin configuration.
	configuring bool
	// resumed are streams continued after stop-all-iteration whose held
	// data afterCall delivers.
	resumed []*Stream

	trapped   error // the first trap; the VM refuses calls after it
	rootID    uint32
	nextID    uint32
	effective uint32
	streams   map[uint32]*Stream
	metrics   []*Metric // metric id - 1 -> metric
	logs      []LogEntry
	tick      time.Duration

	// callouts
	upstreams Upstreams
	own       *StaticUpstreams // closed with the VM when it built one
	nextToken uint32
	inflight  int
	results   chan calloutResult
	// progress is closed, and replaced, whenever an answer is delivered:
	// several goroutines may wait for answers at once (a stream's
	// AwaitResume, a dispatcher's AwaitCallouts), and the answer one of
	// them takes may be the one another's stream is paused on, which
	// must then look again rather than wait for an answer that will not
	// come.
	progress   chan struct{}
	wg         sync.WaitGroup
	callResp   *calloutResult // the answer visible during its callback
	cancelled  map[uint32]bool
	grpcStatus struct {
		code uint32
		msg  string
	}

	// shared-queue notifications, posted by any VM's goroutine
	qmu   sync.Mutex
	ready []queueReady
	wake  chan struct{}
}

type vmKey struct{}

// NewVM instantiates the module and starts the plugin as cpp-host does:
// _initialize (only cpp-host's allow-list of host calls works), then
// proxy_on_context_create for the root context, proxy_on_vm_start and
// proxy_on_configure.
//
// # Errors
// The module imports what the host lacks, a call traps (a restricted host
// call during _initialize traps with ErrRestrictedCallback), or the filter
// rejects its VM or plugin configuration.
func (m *Module) NewVM(ctx context.Context, cfg Config) (*VM, error) {
	if cfg.Stats == nil {
		cfg.Stats = NewStats()
	}
	if cfg.Shared == nil {
		cfg.Shared = NewSharedData()
	}
	if cfg.Queues == nil {
		cfg.Queues = NewSharedQueues()
	}
	vmCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	vm := &VM{
		cfg:       cfg,
		cancel:    cancel,
		streams:   map[uint32]*Stream{},
		results:   make(chan calloutResult, 64),
		progress:  make(chan struct{}),
		wake:      make(chan struct{}, 1),
		rootID:    1,
		nextID:    2,
		started:   time.Now(),
		upstreams: cfg.Upstreams,
	}
	if vm.upstreams == nil {
		vm.own = NewStaticUpstreams(cfg.Clusters)
		vm.upstreams = vm.own
	}
	vm.ctx = context.WithValue(vmCtx, vmKey{}, vm)
	vm.callCtx = context.WithValue(context.Background(), vmKey{}, vm)

	// cpp-host gives the guest no stdin, arguments or environment, and
	// serves stdout and stderr itself (to the log): the module config sets
	// none of them and the WASI module here is cpp-host's, not wazero's.
	mc := wazero.NewModuleConfig().WithName(fmt.Sprintf("vm-%d", m.seq.Add(1))).WithStartFunctions()
	vm.mu.Lock()
	defer vm.mu.Unlock()
	mod, err := m.runtime.InstantiateModule(vm.ctx, m.compiled, mc)
	if err != nil {
		vm.closeLocked()
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	vm.mod = mod
	for id, name := range exportNames {
		var e export
		if e.f = mod.ExportedFunction(name); e.f != nil {
			e.result = len(e.f.Definition().ResultTypes()) > 0
		}
		vm.fns[id] = e
	}
	fail := func(err error) (*VM, error) {
		vm.closeLocked()
		return nil, err
	}
	vm.allowed = startAllowed
	_, err = vm.call(expInitialize)
	vm.allowed = nil
	if err != nil {
		return fail(err)
	}
	vm.effective = vm.rootID
	if _, err := vm.call(expContextCreate, uint64(vm.rootID), 0); err != nil {
		return fail(err)
	}
	ok, err := vm.call(expVMStart, uint64(vm.rootID), uint64(len(cfg.VMConfig)))
	if err != nil {
		return fail(err)
	}
	if ok == 0 {
		return fail(fmt.Errorf("proxy_on_vm_start rejected the vm configuration%s", vm.logNote()))
	}
	vm.configuring = true
	ok, err = vm.call(expConfigure, uint64(vm.rootID), uint64(len(cfg.PluginConfig)))
	vm.configuring = false
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
func (vm *VM) call(id exportID, args ...uint64) (uint64, error) {
	if vm.mod == nil || vm.mod.IsClosed() {
		return 0, ErrClosed
	}
	if vm.trapped != nil {
		return 0, fmt.Errorf("trapped earlier: %w", vm.trapped)
	}
	e := vm.fns[id]
	f := e.f
	if f == nil {
		return 0, nil
	}
	name := exportNames[id]
	if vm.cfg.Trace != nil {
		vm.cfg.Trace(name)
	}
	// CallWithStack on a VM-owned array spares an allocation per call;
	// calls are serialised by vm.mu and host functions never re-enter call.
	stack := vm.stack[:max(len(args), 1)]
	copy(stack, args)
	err := f.CallWithStack(vm.callCtx, stack)
	if err != nil {
		// A trap leaves the guest's runtime in an unknown state, as in
		// Envoy, which then fails the VM: nothing else runs in it.
		vm.trapped = fmt.Errorf("%w: module function[%s] failed: %w%s", ErrClosed, name, err, vm.errorLogNote())
		return 0, vm.trapped
	}
	if !e.result {
		return 0, nil
	}
	return stack[0], nil
}

// maxKeys bounds the interned property paths: a guest that asks for ever
// new ones gets a fresh string each time past it.
const maxKeys = 256

// intern returns key as a string, the same one for the same bytes.
func (vm *VM) intern(key []byte) string {
	if k, ok := vm.keys[string(key)]; ok {
		return k
	}
	k := string(key)
	if len(vm.keys) < maxKeys {
		if vm.keys == nil {
			vm.keys = map[string]string{}
		}
		vm.keys[k] = k
	}
	return k
}

// export is a guest export, looked up when the VM is made: f is nil when
// the module lacks it.
type export struct {
	f      api.Function
	result bool // it returns a value
}

// exportID names a guest export the host calls; call takes it rather than
// the name, so that a call costs no lookup by name.
type exportID int

const (
	expInitialize exportID = iota
	expMemoryAllocate
	expContextCreate
	expVMStart
	expConfigure
	expTick
	expDone
	expDelete
	expLog
	expRequestHeaders
	expRequestBody
	expRequestTrailers
	expResponseHeaders
	expResponseBody
	expResponseTrailers
	expHTTPCallResponse
	expGRPCReceive
	expGRPCClose
	expQueueReady
	numExports
)

var exportNames = [numExports]string{
	expInitialize:       "_initialize",
	expMemoryAllocate:   "proxy_on_memory_allocate",
	expContextCreate:    "proxy_on_context_create",
	expVMStart:          "proxy_on_vm_start",
	expConfigure:        "proxy_on_configure",
	expTick:             "proxy_on_tick",
	expDone:             "proxy_on_done",
	expDelete:           "proxy_on_delete",
	expLog:              "proxy_on_log",
	expRequestHeaders:   "proxy_on_request_headers",
	expRequestBody:      "proxy_on_request_body",
	expRequestTrailers:  "proxy_on_request_trailers",
	expResponseHeaders:  "proxy_on_response_headers",
	expResponseBody:     "proxy_on_response_body",
	expResponseTrailers: "proxy_on_response_trailers",
	expHTTPCallResponse: "proxy_on_http_call_response",
	expGRPCReceive:      "proxy_on_grpc_receive",
	expGRPCClose:        "proxy_on_grpc_close",
	expQueueReady:       "proxy_on_queue_ready",
}

// errorLogNote is what the guest wrote at error level (stderr, where Go
// prints a panic, arrives one write per line of the log; an empty line is
// a newline it wrote) before a trap, bounded.
func (vm *VM) errorLogNote() string {
	const limit = 2048
	var b strings.Builder
	for _, e := range vm.logs {
		if e.Level != proxywasm.LogLevelError {
			continue
		}
		if e.Message == "" {
			b.WriteByte('\n')
		} else {
			b.WriteString(e.Message)
		}
	}
	note := strings.TrimSpace(b.String())
	if note == "" {
		return ""
	}
	if len(note) > limit {
		note = note[:limit] + "..."
	}
	return "\nguest stderr:\n" + note
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
	if _, err := vm.call(expTick, uint64(vm.rootID)); err != nil {
		return err
	}
	return vm.afterCall()
}

// TickPeriod is the period the guest last set (0: no ticks).
func (vm *VM) TickPeriod() time.Duration {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.tick
}

// MaxLogs bounds the proxy_log lines a VM keeps; beyond it the oldest half
// is dropped.
const MaxLogs = 4096

// Logs returns the most recent proxy_log lines (at most MaxLogs).
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
		if _, e := vm.call(expDone, uint64(vm.rootID)); e != nil {
			err = e
		} else if _, e := vm.call(expDelete, uint64(vm.rootID)); e != nil {
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
	if vm.own != nil {
		vm.own.Close()
	}
}

// AwaitCallouts delivers callout answers until none is in flight.
//
// # Errors
// ctx ends first, or a callback traps.
func (vm *VM) AwaitCallouts(ctx context.Context) error {
	for {
		if err := vm.DeliverQueueReady(); err != nil {
			return err
		}
		vm.mu.Lock()
		n, progress := vm.inflight, vm.progress
		vm.mu.Unlock()
		if n == 0 {
			return nil
		}
		if err := vm.deliverNext(ctx, progress); err != nil {
			return err
		}
	}
}

// deliverNext waits for one callout answer and runs its callback, or
// returns when another goroutine delivered one since progress was read
// (with the state the caller checked, under vm.mu).
func (vm *VM) deliverNext(ctx context.Context, progress <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("await callouts: %w", ctx.Err())
	case r := <-vm.results:
		vm.mu.Lock()
		defer vm.mu.Unlock()
		vm.inflight--
		defer vm.advance()
		return vm.deliver(r)
	case <-vm.wake:
		return vm.DeliverQueueReady()
	case <-progress:
		return nil
	}
}

// advance wakes every goroutine waiting in deliverNext; vm.mu is held.
func (vm *VM) advance() {
	close(vm.progress)
	vm.progress = make(chan struct{})
}

func (vm *VM) logf(level proxywasm.LogLevel, id uint32, msg string) {
	if len(vm.logs) >= MaxLogs {
		// The lines also went to the Logger; only the recent ones are kept
		// here, for Logs and for the note a trap's error carries.
		vm.logs = append(vm.logs[:0], vm.logs[len(vm.logs)-MaxLogs/2:]...)
	}
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
