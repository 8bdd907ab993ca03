package wasmhost

import (
	"context"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// hostFn implements one env.proxy_* call for the VM found in ctx. Params
// are in stack; the returned status becomes the call's i32 result.
type hostFn func(ctx context.Context, vm *VM, m api.Module, p []uint64) pw.Status

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

func i32s(n int) []api.ValueType {
	t := make([]api.ValueType, n)
	for i := range t {
		t[i] = i32
	}
	return t
}

// instantiateEnv registers the env host calls cpp-host exports to an ABI
// 0.2.1 module. They run with the VM's lock already held by the guest call
// that led to them.
func instantiateEnv(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder("env")
	def := func(name string, params []api.ValueType, f hostFn) {
		qualifiedName := "env." + name
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
			vm, ok := ctx.Value(vmKey{}).(*VM)
			if !ok {
				stack[0] = uint64(pw.StatusInternalFailure)
				return
			}
			vm.checkAllowed(qualifiedName)
			stack[0] = uint64(f(ctx, vm, m, stack))
		}), params, []api.ValueType{i32}).Export(name)
	}
	def("proxy_log", i32s(3), hostLog)
	def("proxy_get_log_level", i32s(1), func(_ context.Context, _ *VM, m api.Module, p []uint64) pw.Status {
		return okIf(m.Memory().WriteUint32Le(u32(p[0]), uint32(pw.LogLevelTrace)))
	})
	def("proxy_get_current_time_nanoseconds", i32s(1), func(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
		return okIf(m.Memory().WriteUint64Le(u32(p[0]), uint64(vm.now().UnixNano())))
	})
	def("proxy_set_tick_period_milliseconds", i32s(1), func(_ context.Context, vm *VM, _ api.Module, p []uint64) pw.Status {
		vm.tick = time.Duration(u32(p[0])) * time.Millisecond
		return pw.StatusOK
	})
	def("proxy_get_buffer_bytes", i32s(5), hostGetBufferBytes)
	def("proxy_set_buffer_bytes", i32s(5), hostSetBufferBytes)
	def("proxy_get_header_map_pairs", i32s(3), hostGetHeaderMapPairs)
	def("proxy_set_header_map_pairs", i32s(3), hostSetHeaderMapPairs)
	def("proxy_get_header_map_value", i32s(5), hostGetHeaderMapValue)
	def("proxy_add_header_map_value", i32s(5), hostAddHeaderMapValue)
	def("proxy_replace_header_map_value", i32s(5), hostReplaceHeaderMapValue)
	def("proxy_remove_header_map_value", i32s(3), hostRemoveHeaderMapValue)
	def("proxy_get_property", i32s(4), hostGetProperty)
	def("proxy_set_property", i32s(4), hostSetProperty)
	def("proxy_send_local_response", i32s(8), hostSendLocalResponse)
	def("proxy_continue_stream", i32s(1), hostContinueStream)
	def("proxy_close_stream", i32s(1), hostCloseStream)
	def("proxy_http_call", i32s(10), hostHTTPCall)
	def("proxy_grpc_call", i32s(12), hostGRPCCall)
	def("proxy_grpc_cancel", i32s(1), hostGRPCCancel)
	def("proxy_get_status", i32s(3), hostGetStatus)
	def("proxy_set_effective_context", i32s(1), func(_ context.Context, vm *VM, _ api.Module, p []uint64) pw.Status {
		id := u32(p[0])
		if _, ok := vm.streams[id]; !ok && id != vm.rootID {
			return pw.StatusBadArgument
		}
		vm.effective = id
		return pw.StatusOK
	})
	def("proxy_done", nil, func(context.Context, *VM, api.Module, []uint64) pw.Status { return pw.StatusOK })
	def("proxy_define_metric", i32s(4), hostDefineMetric)
	def("proxy_increment_metric", []api.ValueType{i32, i64}, func(_ context.Context, vm *VM, _ api.Module, p []uint64) pw.Status {
		m, ok := vm.metric(u32(p[0]))
		if !ok {
			return pw.StatusNotFound
		}
		return pw.StatusOf(vm.cfg.Stats.increment(m, int64(p[1])))
	})
	def("proxy_record_metric", []api.ValueType{i32, i64}, func(_ context.Context, vm *VM, _ api.Module, p []uint64) pw.Status {
		m, ok := vm.metric(u32(p[0]))
		if !ok {
			return pw.StatusNotFound
		}
		return pw.StatusOf(vm.cfg.Stats.record(m, p[1]))
	})
	def("proxy_get_metric", i32s(2), func(_ context.Context, vm *VM, mod api.Module, p []uint64) pw.Status {
		m, ok := vm.metric(u32(p[0]))
		if !ok {
			return pw.StatusNotFound
		}
		if m.Type == pw.MetricTypeHistogram {
			return pw.StatusBadArgument // Envoy's getMetric reads counters and gauges only
		}
		return okIf(mod.Memory().WriteUint64Le(u32(p[1]), vm.cfg.Stats.value(m)))
	})
	def("proxy_get_shared_data", i32s(5), hostGetSharedData)
	def("proxy_set_shared_data", i32s(5), hostSetSharedData)
	defineMore(b, def)
	_, err := b.Instantiate(ctx)
	return err
}

func u32(v uint64) uint32 { return uint32(v) }

func okIf(ok bool) pw.Status {
	if ok {
		return pw.StatusOK
	}
	return pw.StatusInvalidMemoryAccess
}

// view returns guest memory [ptr, ptr+size) in place: valid only until
// the guest runs again or its memory grows.
func view(m api.Module, ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return nil, true
	}
	return m.Memory().Read(ptr, size)
}

// read returns a copy of guest memory [ptr, ptr+size).
func read(m api.Module, ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return nil, true
	}
	b, ok := m.Memory().Read(ptr, size)
	if !ok {
		return nil, false
	}
	return append([]byte(nil), b...), true
}

func readString(m api.Module, ptr, size uint32) (string, bool) {
	b, ok := read(m, ptr, size)
	return string(b), ok
}

// returnBytes hands data to the guest the ABI's way: memory from the
// guest's proxy_on_memory_allocate, its address and size written to the
// two return slots.
func (vm *VM) returnBytes(ctx context.Context, m api.Module, data []byte, retPtr, retSize uint32) pw.Status {
	addr, st := vm.guestAlloc(ctx, m, len(data))
	if st != pw.StatusOK {
		return st
	}
	if len(data) > 0 && !m.Memory().Write(addr, data) {
		return pw.StatusInvalidMemoryAccess
	}
	return writeSlots(m, addr, len(data), retPtr, retSize)
}

// returnString is returnBytes for a string, without converting it to a
// byte slice first: header values are strings, read on every request.
func (vm *VM) returnString(ctx context.Context, m api.Module, data string, retPtr, retSize uint32) pw.Status {
	addr, st := vm.guestAlloc(ctx, m, len(data))
	if st != pw.StatusOK {
		return st
	}
	if len(data) > 0 && !m.Memory().WriteString(addr, data) {
		return pw.StatusInvalidMemoryAccess
	}
	return writeSlots(m, addr, len(data), retPtr, retSize)
}

// guestAlloc asks the guest for n bytes (none for n == 0, address 0).
func (vm *VM) guestAlloc(ctx context.Context, m api.Module, n int) (uint32, pw.Status) {
	if n == 0 {
		return 0, pw.StatusOK
	}
	f := vm.fns[expMemoryAllocate].f
	// cpp-host restricts the guest's allocator to a few host calls.
	saved := vm.allowed
	vm.allowed = mallocAllowed
	// A VM-owned slot instead of Call's fresh result slice: the allocator
	// runs once per value handed out, several times a request. The
	// allocator may not reach returnBytes again (mallocAllowed), so the
	// slot is never in use twice.
	vm.allocStack[0] = uint64(n)
	err := f.CallWithStack(ctx, vm.allocStack[:])
	vm.allowed = saved
	if err != nil {
		panic(err) // the trap propagates to the guest call that led here
	}
	if vm.allocStack[0] == 0 {
		return 0, pw.StatusInvalidMemoryAccess
	}
	return uint32(vm.allocStack[0]), pw.StatusOK
}

func writeSlots(m api.Module, addr uint32, n int, retPtr, retSize uint32) pw.Status {
	if !m.Memory().WriteUint32Le(retPtr, addr) || !m.Memory().WriteUint32Le(retSize, uint32(n)) {
		return pw.StatusInvalidMemoryAccess
	}
	return pw.StatusOK
}

func hostLog(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	if u32(p[0]) > uint32(pw.LogLevelCritical) {
		return pw.StatusBadArgument // cpp-host: a level above LogLevel::Max
	}
	msg, ok := readString(m, u32(p[1]), u32(p[2]))
	if !ok {
		return pw.StatusInvalidMemoryAccess
	}
	vm.logf(pw.LogLevel(u32(p[0])), vm.effective, msg)
	return pw.StatusOK
}

// buffer returns the buffer a buffer call addresses in the current
// callback, or false when it does not exist here.
func (vm *VM) buffer(bt pw.BufferType) (buf *[]byte, mutable, ok bool) {
	s := vm.streams[vm.effective]
	// The empty buffer of a body that is not there: never written (it is
	// not mutable), and a VM field rather than a local, which would be
	// allocated for the pointer returned.
	vm.none = nil
	none := &vm.none
	switch bt {
	case pw.BufferTypeHTTPRequestBody:
		// Envoy shows the body in its callback and while buffering after
		// it; elsewhere the buffer is empty and cannot be written.
		if s != nil && s.reqBodyLive {
			return &s.reqBody, true, true
		}
		if s != nil {
			return none, false, true
		}
	case pw.BufferTypeHTTPResponseBody:
		if s != nil && s.respBodyLive {
			return &s.respBody, true, true
		}
		if s != nil {
			return none, false, true
		}
	case pw.BufferTypeHTTPCallResponseBody, pw.BufferTypeGRPCReceiveBuffer:
		if vm.callResp != nil {
			return &vm.callResp.body, false, true
		}
	case pw.BufferTypeVMConfiguration:
		return &vm.cfg.VMConfig, false, true
	case pw.BufferTypePluginConfiguration:
		// Envoy hands the plugin configuration out during
		// proxy_on_configure only.
		if vm.configuring {
			return &vm.cfg.PluginConfig, false, true
		}
	}
	return nil, false, false
}

func hostGetBufferBytes(ctx context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	if u32(p[0]) > maxBufferType {
		return pw.StatusBadArgument
	}
	buf, _, ok := vm.buffer(pw.BufferType(u32(p[0])))
	if !ok {
		return pw.StatusNotFound
	}
	// As Envoy: reading past the end is an empty read, not an error.
	start, max := uint64(u32(p[1])), uint64(u32(p[2]))
	start = min(start, uint64(len(*buf)))
	end := min(start+max, uint64(len(*buf)))
	return vm.returnBytes(ctx, m, (*buf)[start:end], u32(p[3]), u32(p[4]))
}

// hostSetBufferBytes follows Envoy's Buffer::copyFrom: start 0 drops the
// first length bytes and prepends the data (length 0 prepends, a length
// covering the buffer replaces it), a start at or past the end appends;
// anything else is a bad argument.
func hostSetBufferBytes(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	bt := pw.BufferType(u32(p[0]))
	if u32(p[0]) > maxBufferType {
		return pw.StatusBadArgument
	}
	buf, mutable, ok := vm.buffer(bt)
	if !ok {
		return pw.StatusNotFound
	}
	if !mutable {
		return pw.StatusBadArgument // Envoy's other buffers are immutable
	}
	data, ok := read(m, u32(p[3]), u32(p[4]))
	if !ok {
		return pw.StatusInvalidMemoryAccess
	}
	start, length := uint64(u32(p[1])), uint64(u32(p[2]))
	n := uint64(len(*buf))
	switch {
	case start == 0:
		data = append(data, (*buf)[min(length, n):]...) // data is read's copy
		*buf = data
	case start >= n:
		*buf = append(*buf, data...)
	default:
		return pw.StatusBadArgument
	}
	return pw.StatusOK
}

// headerMap returns the map a header call addresses in the current
// callback, as Envoy's Context::getMap and getConstMap do: request and
// response headers exist only while their callback runs or while the
// stream stays stopped in it (Envoy forgets them on Continue), and read
// only in the log callback; a map that does not exist is BadArgument.
func (vm *VM) headerMap(mt pw.MapType, mutable bool) (*[][2]string, bool) {
	s := vm.streams[vm.effective]
	switch mt {
	case pw.MapTypeHTTPRequestHeaders:
		if s != nil && (s.reqHeadersLive || (s.inLog && !mutable)) {
			return &s.reqHeaders, true
		}
	case pw.MapTypeHTTPRequestTrailers:
		// Trailers exist in their callback; a filter may add them from
		// the end-of-stream body callback (Envoy's addDecodedTrailers).
		if s != nil && (s.reqTrailersLive || (s.reqLastBody && mutable)) {
			return &s.reqTrailers, true
		}
	case pw.MapTypeHTTPResponseHeaders:
		if s != nil && s.respHeaders != nil && (s.respHeadersLive || (s.inLog && !mutable)) {
			return &s.respHeaders, true
		}
	case pw.MapTypeHTTPResponseTrailers:
		if s != nil && (s.respTrailersLive || (s.respLastBody && mutable) || (s.inLog && !mutable)) {
			return &s.respTrailers, true
		}
	case pw.MapTypeHTTPCallResponseHeaders:
		if vm.callResp != nil && !mutable {
			return &vm.callResp.headers, true
		}
	case pw.MapTypeHTTPCallResponseTrailers:
		if vm.callResp != nil && !mutable {
			return &vm.callResp.trailers, true
		}
	}
	return nil, false
}

// headersModified is Envoy's onHeadersModified: a change to the request
// headers clears the route cache, so the route is chosen again.
func (vm *VM) headersModified(mt pw.MapType) {
	if mt != pw.MapTypeHTTPRequestHeaders {
		return
	}
	if s := vm.streams[vm.effective]; s != nil {
		s.routeCacheCleared = true
		if s.opts.OnRouteCacheCleared != nil {
			s.opts.OnRouteCacheCleared()
		}
	}
}

// hostGetHeaderMapPairs returns an empty map when the map does not exist,
// as Envoy's getHeaderMapPairs does.
func hostGetHeaderMapPairs(ctx context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	var pairs [][2]string
	if hm, ok := vm.headerMap(pw.MapType(u32(p[0])), false); ok {
		pairs = *hm
	}
	// Encoded in a VM-owned buffer: returnBytes copies it into the guest.
	vm.mapBuf = appendMap(vm.mapBuf[:0], pairs)
	return vm.returnBytes(ctx, m, vm.mapBuf, u32(p[1]), u32(p[2]))
}

func hostSetHeaderMapPairs(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	mt := pw.MapType(u32(p[0]))
	hm, ok := vm.headerMap(mt, true)
	if !ok {
		return pw.StatusBadArgument
	}
	b, ok := read(m, u32(p[1]), u32(p[2]))
	if !ok {
		return pw.StatusInvalidMemoryAccess
	}
	pairs, err := pw.DeserializeMap(b)
	if err != nil {
		return pw.StatusBadArgument
	}
	for i := range pairs {
		pairs[i][0] = strings.ToLower(pairs[i][0])
	}
	*hm = pairs
	vm.headersModified(mt)
	return pw.StatusOK
}

func hostGetHeaderMapValue(ctx context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	hm, ok := vm.headerMap(pw.MapType(u32(p[0])), false)
	if !ok {
		return pw.StatusBadArgument
	}
	// The key is looked up in place, not copied: guest memory cannot
	// change before the lookup ends, and the guest runs again only in
	// returnString.
	key, ok := view(m, u32(p[1]), u32(p[2]))
	if !ok {
		return pw.StatusInvalidMemoryAccess
	}
	v, found := headerValueBytes(*hm, key)
	if !found {
		return pw.StatusNotFound
	}
	return vm.returnString(ctx, m, v, u32(p[3]), u32(p[4]))
}

func hostAddHeaderMapValue(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	return editHeaderMap(vm, m, p, func(hm [][2]string, key, val string) [][2]string {
		return append(hm, [2]string{strings.ToLower(key), val})
	})
}

func hostReplaceHeaderMapValue(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	return editHeaderMap(vm, m, p, replaceHeader)
}

// editHeaderMap applies edit to the map p[0] names with the key and value
// the guest passed as (p[1], p[2]) and (p[3], p[4]).
func editHeaderMap(vm *VM, m api.Module, p []uint64, edit func(hm [][2]string, key, val string) [][2]string) pw.Status {
	mt := pw.MapType(u32(p[0]))
	hm, ok := vm.headerMap(mt, true)
	if !ok {
		return pw.StatusBadArgument
	}
	key, ok1 := readString(m, u32(p[1]), u32(p[2]))
	val, ok2 := readString(m, u32(p[3]), u32(p[4]))
	if !ok1 || !ok2 {
		return pw.StatusInvalidMemoryAccess
	}
	*hm = edit(*hm, key, val)
	vm.headersModified(mt)
	return pw.StatusOK
}

func hostRemoveHeaderMapValue(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	mt := pw.MapType(u32(p[0]))
	hm, ok := vm.headerMap(mt, true)
	if !ok {
		return pw.StatusBadArgument
	}
	key, ok := readString(m, u32(p[1]), u32(p[2]))
	if !ok {
		return pw.StatusInvalidMemoryAccess
	}
	*hm = removeHeader(*hm, key)
	vm.headersModified(mt)
	return pw.StatusOK
}

func hostGetProperty(ctx context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	path, ok := view(m, u32(p[0]), u32(p[1]))
	if !ok {
		return pw.StatusInvalidMemoryAccess
	}
	// The dotted key is built in a VM-owned buffer and the maps are indexed
	// with string(buf), which Go does without allocating: slo reads a
	// property on every request.
	vm.propKey = append(vm.propKey[:0], path...)
	for i, c := range vm.propKey {
		if c == 0 {
			vm.propKey[i] = '.'
		}
	}
	key := vm.propKey
	if s := vm.streams[vm.effective]; s != nil {
		if v, ok := s.props[string(key)]; ok { // nil map: not found
			return vm.returnBytes(ctx, m, v, u32(p[2]), u32(p[3]))
		}
		if s.opts.Properties != nil {
			if v, ok := s.opts.Properties(vm.intern(key)); ok {
				return vm.returnBytes(ctx, m, v, u32(p[2]), u32(p[3]))
			}
		}
	}
	if v, ok := vm.cfg.Properties[string(key)]; ok {
		return vm.returnBytes(ctx, m, v, u32(p[2]), u32(p[3]))
	}
	return pw.StatusNotFound
}

func hostSetProperty(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	path, ok1 := read(m, u32(p[0]), u32(p[1]))
	val, ok2 := read(m, u32(p[2]), u32(p[3]))
	if !ok1 || !ok2 {
		return pw.StatusInvalidMemoryAccess
	}
	key := strings.Join(pw.DeserializePropertyPath(path), ".")
	if s := vm.streams[vm.effective]; s != nil {
		if s.props == nil {
			s.props = map[string][]byte{}
		}
		s.props[key] = val
		return pw.StatusOK
	}
	if vm.cfg.Properties == nil {
		vm.cfg.Properties = map[string][]byte{}
	}
	vm.cfg.Properties[key] = val
	return pw.StatusOK
}

func hostSendLocalResponse(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	s := vm.streams[vm.effective]
	if s == nil {
		return pw.StatusNotFound
	}
	details, ok1 := readString(m, u32(p[1]), u32(p[2]))
	body, ok2 := read(m, u32(p[3]), u32(p[4]))
	hb, ok3 := read(m, u32(p[5]), u32(p[6]))
	if !ok1 || !ok2 || !ok3 {
		return pw.StatusInvalidMemoryAccess
	}
	headers, err := pw.DeserializeMap(hb)
	if err != nil {
		return pw.StatusBadArgument
	}
	s.local = &LocalResponse{
		Status:     int(u32(p[0])),
		Details:    details,
		Body:       body,
		Headers:    headers,
		GRPCStatus: int32(u32(p[7])),
	}
	vm.stopNext = true // cpp-host: the callback's answer becomes a stop
	return pw.StatusOK
}

func hostContinueStream(_ context.Context, vm *VM, _ api.Module, p []uint64) pw.Status {
	s := vm.streams[vm.effective]
	if s == nil {
		return pw.StatusNotFound
	}
	// Envoy defers the continue until the guest call returns (afterCall)
	// and forgets the request headers, body and trailers it held.
	switch pw.StreamType(u32(p[0])) {
	case pw.StreamTypeRequest:
		s.reqPaused = false
		s.reqHeadersLive, s.reqTrailersLive = false, false
		if s.reqStopAll {
			vm.resumed = append(vm.resumed, s)
		}
	case pw.StreamTypeResponse:
		s.respPaused = false
		s.reqHeadersLive, s.reqTrailersLive = false, false
		s.respTrailersLive = false
		if s.respStopAll {
			vm.resumed = append(vm.resumed, s)
		}
	default:
		return pw.StatusBadArgument
	}
	return pw.StatusOK
}

func hostCloseStream(_ context.Context, vm *VM, _ api.Module, _ []uint64) pw.Status {
	s := vm.streams[vm.effective]
	if s == nil {
		return pw.StatusNotFound
	}
	s.reset = true
	return pw.StatusOK
}

func hostDefineMetric(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	name, ok := readString(m, u32(p[1]), u32(p[2]))
	if !ok {
		return pw.StatusInvalidMemoryAccess
	}
	t := pw.MetricType(u32(p[0]))
	if t > pw.MetricTypeHistogram || name == "" {
		return pw.StatusBadArgument
	}
	metric, err := vm.cfg.Stats.define(t, name)
	if err != nil {
		return pw.StatusBadArgument
	}
	for i, have := range vm.metrics {
		if have == metric {
			return okIf(m.Memory().WriteUint32Le(u32(p[3]), uint32(i+1)))
		}
	}
	vm.metrics = append(vm.metrics, metric)
	return okIf(m.Memory().WriteUint32Le(u32(p[3]), uint32(len(vm.metrics))))
}

func (vm *VM) metric(id uint32) (*Metric, bool) {
	if id == 0 || int(id) > len(vm.metrics) {
		return nil, false
	}
	return vm.metrics[id-1], true
}

func hostGetSharedData(ctx context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	key, ok := readString(m, u32(p[0]), u32(p[1]))
	if !ok {
		return pw.StatusInvalidMemoryAccess
	}
	v, cas, found := vm.cfg.Shared.Get(key)
	if !found {
		return pw.StatusNotFound
	}
	if st := vm.returnBytes(ctx, m, v, u32(p[2]), u32(p[3])); st != pw.StatusOK {
		return st
	}
	return okIf(m.Memory().WriteUint32Le(u32(p[4]), cas))
}

func hostSetSharedData(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	key, ok1 := readString(m, u32(p[0]), u32(p[1]))
	val, ok2 := read(m, u32(p[2]), u32(p[3]))
	if !ok1 || !ok2 {
		return pw.StatusInvalidMemoryAccess
	}
	return pw.StatusOf(vm.cfg.Shared.Set(key, val, u32(p[4])))
}

// headerValue is the first value of key, compared case-insensitively as
// HTTP header names are.
// headerValueBytes is headerValue for a key still in guest memory.
func headerValueBytes(h [][2]string, key []byte) (string, bool) {
	for _, kv := range h {
		if equalFoldASCII(kv[0], key) {
			return kv[1], true
		}
	}
	return "", false
}

// equalFoldASCII reports whether s and b are equal under ASCII case
// folding, as header names compare; strings.EqualFold would need b as a
// string, an allocation per lookup. Names with non-ASCII bytes, which
// Envoy refuses anyway, go to strings.EqualFold so nothing changes.
func equalFoldASCII(s string, b []byte) bool {
	if len(s) != len(b) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c, d := s[i], b[i]
		if c == d {
			continue
		}
		if c >= 0x80 || d >= 0x80 {
			return strings.EqualFold(s, string(b))
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

func headerValue(h [][2]string, key string) (string, bool) {
	for _, kv := range h {
		if strings.EqualFold(kv[0], key) {
			return kv[1], true
		}
	}
	return "", false
}

func replaceHeader(h [][2]string, key, val string) [][2]string {
	key = strings.ToLower(key)
	out := h[:0:0]
	replaced := false
	for _, kv := range h {
		if strings.EqualFold(kv[0], key) {
			if !replaced {
				out = append(out, [2]string{key, val})
				replaced = true
			}
			continue
		}
		out = append(out, kv)
	}
	if !replaced {
		out = append(out, [2]string{key, val})
	}
	return out
}

func removeHeader(h [][2]string, key string) [][2]string {
	out := h[:0:0]
	for _, kv := range h {
		if !strings.EqualFold(kv[0], key) {
			out = append(out, kv)
		}
	}
	return out
}
