package wasmhost

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// WASI errno values cpp-host returns.
const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoNotdir  = 20
	errnoFault   = 21
	errnoInval   = 28
	errnoNoent   = 44
	errnoNosys   = 52
	errnoNotsup  = 58
)

// maxRandomGet is cpp-host's PROXY_WASM_HOST_WASI_RANDOM_GET_MAX_SIZE_BYTES.
const maxRandomGet = 64 << 10

// ErrRestrictedCallback is the trap of a host call made where cpp-host
// forbids it: during _initialize or inside proxy_on_memory_allocate, only
// an allow-list of calls works (cpp-host's WasmBase::startVm and
// allocMemory); any other traps with "restricted_callback".
var ErrRestrictedCallback = errors.New("restricted_callback")

// The allow-lists of cpp-host, by module-qualified import name.
var (
	// startAllowed is WasmBase::startVm's list, for _initialize/_start.
	startAllowed = qualified([]string{"env.emscripten_notify_memory_growth", "env.proxy_log"},
		"fd_write", "args_sizes_get", "args_get", "environ_sizes_get", "environ_get",
		"clock_time_get", "clock_res_get", "random_get", "poll_oneoff", "fd_fdstat_get",
		"fd_fdstat_set_flags", "fd_advise", "fd_allocate", "fd_datasync", "fd_fdstat_set_rights",
		"fd_filestat_get", "fd_filestat_set_size", "fd_filestat_set_times", "fd_pread",
		"fd_prestat_dir_name", "fd_prestat_get", "fd_pwrite", "fd_readdir", "fd_renumber", "fd_sync",
		"fd_tell", "path_create_directory", "path_filestat_get", "path_filestat_set_times",
		"path_link", "path_readlink", "path_remove_directory", "path_rename", "path_symlink",
		"path_unlink_file", "sock_accept", "sock_recv", "sock_send", "sock_shutdown")
	// mallocAllowed is WasmBase::allocMemory's list.
	mallocAllowed = qualified([]string{"env.proxy_log"}, "fd_write", "clock_time_get", "poll_oneoff")
)

// qualified returns the set of env names plus each WASI name under both
// WASI module names, as cpp-host lists them.
func qualified(env []string, wasi ...string) map[string]bool {
	set := map[string]bool{}
	for _, n := range env {
		set[n] = true
	}
	for _, n := range wasi {
		set["wasi_unstable."+n] = true
		set["wasi_snapshot_preview1."+n] = true
	}
	return set
}

// checkAllowed traps the guest, as cpp-host's VM wrappers do, when the
// host call name is restricted at this point.
func (vm *VM) checkAllowed(name string) {
	if vm.allowed != nil && !vm.allowed[name] {
		panic(fmt.Errorf("%w: %s", ErrRestrictedCallback, name))
	}
}

// wasiFn implements one WASI call; it returns the errno.
type wasiFn func(vm *VM, m api.Module, p []uint64) uint32

// wasiDef is one WASI function as cpp-host declares it: its parameter
// types (cpp-host's own signature, which is what a module must match to
// link) and its body. A nil result type means the call returns nothing.
type wasiDef struct {
	name   string
	params []api.ValueType
	fn     wasiFn
	void   bool
}

func stdio(fd uint64) bool { return fd == 1 || fd == 2 }

// badfUnlessStdio returns success for fd 1 and 2 and EBADF otherwise, as
// many of cpp-host's file stubs do.
func badfUnlessStdio(_ *VM, _ api.Module, p []uint64) uint32 {
	if stdio(p[0]) {
		return errnoSuccess
	}
	return errnoBadf
}

func constErrno(e uint32) wasiFn { return func(*VM, api.Module, []uint64) uint32 { return e } }

// wasiDefs is cpp-host's FOR_ALL_WASI_FUNCTIONS with the semantics of its
// exports.cc: no files, no preopens, stdout and stderr go to the log.
func wasiDefs() []wasiDef {
	w := i32s
	return []wasiDef{
		{"fd_write", w(4), wasiFdWrite, false},
		{"fd_read", w(4), constErrno(errnoNosys), false},
		{"fd_seek", []api.ValueType{i32, i64, i32, i32}, traceOK("wasi_unstable fd_seek"), false},
		{"fd_close", w(1), traceOK("wasi_unstable fd_close"), false},
		{"fd_fdstat_get", w(2), wasiFdstatGet, false},
		{"fd_fdstat_set_flags", w(2), constErrno(errnoNosys), false},
		{"fd_fdstat_set_rights", []api.ValueType{i32, i64, i64}, badfUnlessStdio, false},
		{"environ_get", w(2), constErrno(errnoSuccess), false},
		{"environ_sizes_get", w(2), writeZeroWords, false},
		{"args_get", w(2), constErrno(errnoSuccess), false},
		{"args_sizes_get", w(2), writeZeroWords, false},
		{"clock_time_get", []api.ValueType{i32, i64, i32}, wasiClockTimeGet, false},
		{"clock_res_get", w(2), wasiClockResGet, false},
		{"fd_advise", []api.ValueType{i32, i64, i64, i32}, constErrno(errnoSuccess), false},
		{"fd_allocate", []api.ValueType{i32, i64, i64}, badfUnlessStdio, false},
		{"fd_datasync", w(1), badfUnlessStdio, false},
		{"fd_filestat_set_size", []api.ValueType{i32, i64}, badfUnlessStdio, false},
		{"fd_filestat_set_times", []api.ValueType{i32, i64, i64, i32}, badfUnlessStdio, false},
		{"fd_pread", []api.ValueType{i32, i32, i32, i64, i32}, constErrno(errnoNosys), false},
		{"fd_pwrite", []api.ValueType{i32, i32, i32, i64, i32}, wasiFdPwrite, false},
		{"fd_readdir", []api.ValueType{i32, i32, i32, i64, i32}, wasiFdReaddir, false},
		{"fd_renumber", w(2), wasiFdRenumber, false},
		{"fd_sync", w(1), badfUnlessStdio, false},
		{"fd_tell", w(2), wasiFdTell, false},
		{"path_create_directory", w(3), constErrno(errnoNotsup), false},
		{"path_filestat_set_times", []api.ValueType{i32, i32, i32, i32, i64, i64, i32}, constErrno(errnoNotsup), false},
		// cpp-host declares path_link with six parameters and path_symlink
		// with four, not WASI's seven and five: a module importing them
		// with WASI's signature does not link in Envoy, nor here.
		{"path_link", w(6), constErrno(errnoNotsup), false},
		{"path_readlink", w(6), wasiPathReadlink, false},
		{"path_remove_directory", w(3), constErrno(errnoNotsup), false},
		{"path_rename", w(6), constErrno(errnoNotsup), false},
		{"path_symlink", w(4), constErrno(errnoNotsup), false},
		{"path_unlink_file", w(3), constErrno(errnoNotsup), false},
		{"sock_accept", w(3), wasiSockAccept, false},
		{"sock_recv", w(6), wasiSockRecv, false},
		{"sock_send", w(5), wasiSockSend, false},
		{"sock_shutdown", w(2), constErrno(errnoNotsup), false},
		{"random_get", w(2), wasiRandomGet, false},
		{"sched_yield", nil, constErrno(errnoSuccess), false},
		{"poll_oneoff", w(4), wasiPollOneoff, false},
		{"proc_exit", w(1), traceOK("wasi_unstable proc_exit"), true},
		{"path_open", []api.ValueType{i32, i32, i32, i32, i32, i64, i64, i32, i32}, constErrno(errnoNoent), false},
		{"fd_prestat_get", w(2), constErrno(errnoBadf), false},
		{"fd_prestat_dir_name", w(3), constErrno(errnoNosys), false},
		{"path_filestat_get", w(5), constErrno(errnoNotsup), false},
		{"fd_filestat_get", w(2), constErrno(errnoBadf), false},
	}
}

// instantiateWASI registers cpp-host's WASI under both module names it
// uses.
func instantiateWASI(ctx context.Context, r wazero.Runtime) error {
	for _, module := range []string{"wasi_snapshot_preview1", "wasi_unstable"} {
		b := r.NewHostModuleBuilder(module)
		for _, d := range wasiDefs() {
			qualifiedName := module + "." + d.name
			fn := d.fn
			var results []api.ValueType
			if !d.void {
				results = []api.ValueType{i32}
			}
			void := d.void
			b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
				vm, ok := ctx.Value(vmKey{}).(*VM)
				if !ok {
					panic(errors.New("wasmhost: host call outside a VM"))
				}
				vm.checkAllowed(qualifiedName)
				errno := fn(vm, m, stack)
				if !void {
					stack[0] = uint64(errno)
				}
			}), d.params, results).Export(d.name)
		}
		if _, err := b.Instantiate(ctx); err != nil {
			return fmt.Errorf("instantiate %s: %w", module, err)
		}
	}
	return nil
}

// traceOK logs msg at trace level and succeeds: Envoy's Context::error,
// which cpp-host's fd_seek, fd_close and proc_exit call, only logs at
// trace level, so the guest carries on.
func traceOK(msg string) wasiFn {
	return func(vm *VM, _ api.Module, _ []uint64) uint32 {
		vm.logf(pw.LogLevelTrace, vm.effective, msg)
		return errnoSuccess
	}
}

func writeZeroWords(_ *VM, m api.Module, p []uint64) uint32 {
	if !m.Memory().WriteUint32Le(u32(p[0]), 0) || !m.Memory().WriteUint32Le(u32(p[1]), 0) {
		return errnoFault
	}
	return errnoSuccess
}

// writev gathers the iovecs and logs them: fd 1 at info, fd 2 at error,
// one trailing newline removed; other fds are EBADF.
func writev(vm *VM, m api.Module, fd, iovs, n uint32) (uint32, uint32) {
	var level pw.LogLevel
	switch fd {
	case 1:
		level = pw.LogLevelInfo
	case 2:
		level = pw.LogLevelError
	default:
		return 0, errnoBadf
	}
	var sb strings.Builder
	for i := range n {
		vec, ok := m.Memory().Read(iovs+i*8, 8)
		if !ok {
			return 0, errnoFault
		}
		ptr := uint32(vec[0]) | uint32(vec[1])<<8 | uint32(vec[2])<<16 | uint32(vec[3])<<24
		size := uint32(vec[4]) | uint32(vec[5])<<8 | uint32(vec[6])<<16 | uint32(vec[7])<<24
		if size == 0 {
			continue
		}
		b, ok := m.Memory().Read(ptr, size)
		if !ok {
			return 0, errnoFault
		}
		sb.Write(b)
	}
	s := sb.String()
	if s != "" {
		vm.logf(level, vm.effective, strings.TrimSuffix(s, "\n"))
	}
	return uint32(len(s)), errnoSuccess
}

func wasiFdWrite(vm *VM, m api.Module, p []uint64) uint32 {
	n, errno := writev(vm, m, u32(p[0]), u32(p[1]), u32(p[2]))
	if errno != errnoSuccess {
		return errno
	}
	if !m.Memory().WriteUint32Le(u32(p[3]), n) {
		return errnoFault
	}
	return errnoSuccess
}

func wasiFdPwrite(vm *VM, m api.Module, p []uint64) uint32 {
	if !stdio(p[0]) {
		return errnoBadf
	}
	n, errno := writev(vm, m, u32(p[0]), u32(p[1]), u32(p[2]))
	if errno != errnoSuccess {
		return errno
	}
	if !m.Memory().WriteUint32Le(u32(p[4]), n) {
		return errnoFault
	}
	return errnoSuccess
}

// wasiFdstatGet supports stdout and stderr only: file type 0, rights
// FD_WRITE (64).
func wasiFdstatGet(_ *VM, m api.Module, p []uint64) uint32 {
	if !stdio(p[0]) {
		return errnoBadf
	}
	var b [24]byte
	b[8] = 64
	if !m.Memory().Write(u32(p[1]), b[:]) {
		return errnoFault
	}
	return errnoSuccess
}

func wasiFdReaddir(_ *VM, m api.Module, p []uint64) uint32 {
	if !m.Memory().WriteUint32Le(u32(p[4]), 0) {
		return errnoFault
	}
	return errnoNotdir
}

func wasiFdRenumber(_ *VM, _ api.Module, p []uint64) uint32 {
	if !stdio(p[0]) || !stdio(p[1]) {
		return errnoBadf
	}
	return errnoNotsup
}

func wasiFdTell(_ *VM, m api.Module, p []uint64) uint32 {
	if !stdio(p[0]) {
		return errnoBadf
	}
	if !m.Memory().WriteUint64Le(u32(p[1]), 0) {
		return errnoFault
	}
	return errnoSuccess
}

func wasiPathReadlink(_ *VM, m api.Module, p []uint64) uint32 {
	if !m.Memory().WriteUint32Le(u32(p[5]), 0) {
		return errnoFault
	}
	return errnoNotsup
}

func wasiSockAccept(_ *VM, m api.Module, p []uint64) uint32 {
	if !m.Memory().WriteUint64Le(u32(p[2]), 0) {
		return errnoFault
	}
	return errnoNotsup
}

func wasiSockRecv(_ *VM, m api.Module, p []uint64) uint32 {
	if !m.Memory().WriteUint32Le(u32(p[4]), 0) || !m.Memory().WriteUint16Le(u32(p[5]), 0) {
		return errnoFault
	}
	return errnoNotsup
}

func wasiSockSend(_ *VM, m api.Module, p []uint64) uint32 {
	if !m.Memory().WriteUint32Le(u32(p[4]), 0) {
		return errnoFault
	}
	return errnoNotsup
}

func (vm *VM) now() time.Time {
	if vm.cfg.Clock != nil {
		return vm.cfg.Clock()
	}
	return time.Now()
}

// wasiClockTimeGet serves the realtime (0) and monotonic (1) clocks;
// cpu-time clocks are ENOTSUP.
func wasiClockTimeGet(vm *VM, m api.Module, p []uint64) uint32 {
	var v uint64
	switch u32(p[0]) {
	case 0:
		v = uint64(vm.now().UnixNano())
	case 1:
		if vm.cfg.Clock != nil {
			v = uint64(vm.cfg.Clock().UnixNano())
		} else {
			v = uint64(time.Since(vm.started).Nanoseconds()) + 1
		}
	default:
		return errnoNotsup
	}
	if !m.Memory().WriteUint64Le(u32(p[2]), v) {
		return errnoFault
	}
	return errnoSuccess
}

func wasiClockResGet(_ *VM, m api.Module, p []uint64) uint32 {
	if u32(p[0]) > 1 {
		return errnoNotsup
	}
	if !m.Memory().WriteUint64Le(u32(p[1]), 1) {
		return errnoFault
	}
	return errnoSuccess
}

func wasiRandomGet(_ *VM, m api.Module, p []uint64) uint32 {
	n := u32(p[1])
	if n > maxRandomGet {
		return errnoInval
	}
	if n == 0 {
		return errnoSuccess
	}
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if !m.Memory().Write(u32(p[0]), b) {
		return errnoFault
	}
	return errnoSuccess
}

// wasiPollOneoff returns at once with no events: cpp-host does no polling,
// and Go's runtime needs success here (it sleeps through poll_oneoff).
func wasiPollOneoff(_ *VM, m api.Module, p []uint64) uint32 {
	if !m.Memory().WriteUint32Le(u32(p[3]), 0) {
		return errnoFault
	}
	return errnoSuccess
}
