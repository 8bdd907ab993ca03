package proxywasm

// The ABI is process-global by construction: one wasm instance is one VM,
// and every export lands in the same module. The dispatcher therefore lives
// in one package variable, reached only through the exports and the API.
var vm = newDispatcher()

// HTTPCallCallback receives a proxy_http_call answer. The response's headers,
// body and trailers can be read with the GetHTTPCallResponse* functions
// during the callback only. A failed call (timeout, reset, unknown route)
// arrives with all three counts zero, as Envoy reports it.
type HTTPCallCallback func(numHeaders, bodySize, numTrailers int)

// GRPCCallCallback receives a proxy_grpc_call outcome: on success status is
// 0 and response is the serialized response message; on failure status is
// the gRPC status code and message its text.
type GRPCCallCallback func(status uint32, message string, response []byte)

type callout struct {
	caller uint32 // context that made the call, made effective for the callback
	http   HTTPCallCallback
	grpc   GRPCCallCallback
}

type dispatcher struct {
	vmContext VMContext
	plugins   map[uint32]PluginContext
	// lastPlugin is the plugin found last: every stream's creation looks
	// its plugin up, a VM usually runs one plugin, and a built-in map
	// operation costs hundreds of nanoseconds in Go's wasm backend.
	lastPlugin pluginEntry
	streams    streamTable
	callouts   map[uint32]callout
	active     uint32 // the context whose callback is running
	// allocations keeps buffers handed to the host reachable until the
	// guest claims them (a pointer in wasm memory is just an integer to
	// the garbage collector). The host allocates only inside a host call,
	// whose results the guest claims as soon as it returns, so this holds
	// one or two buffers: a short slice searched from the end beats a map.
	allocations []allocation
	// ret receives a host call's results (address and size, or an id).
	// Locals whose address goes to a host import escape to the heap: two
	// allocations a call, where these slots are reused (the VM runs one
	// callback at a time, and a host call's results are read before the
	// next call).
	ret [2]uint32
	// arena is where small allocations are carved from: header values and
	// properties are read on every request, and one chunk serves hundreds
	// of them for one allocation. A value the filter keeps holds on to its
	// chunk, so only small ones come from here.
	arena []byte
	// wire is where header maps are serialized for a host call that
	// copies them before it returns (a callout's metadata, a local
	// reply's headers): one buffer for the VM's life, not one a call.
	wire []byte
}

// hostMaps serializes a and b into the VM's wire buffer, valid until the
// next call: for a host call only.
func (d *dispatcher) hostMaps(a, b [][2]string) (ab, bb []byte) {
	w := AppendMap(d.wire[:0], a)
	n := len(w)
	w = AppendMap(w, b)
	d.wire = w
	return w[:n:n], w[n:]
}

const (
	arenaChunk    = 4096
	maxArenaAlloc = 256
)

// retSlots returns the result slots for one host call, zeroed.
func (d *dispatcher) retSlots() (*uint32, *uint32) {
	d.ret = [2]uint32{}
	return &d.ret[0], &d.ret[1]
}

// pluginEntry is a plugin context with its optional interfaces, asserted
// once rather than per stream.
type pluginEntry struct {
	id       uint32 // 0: empty
	ctx      PluginContext
	recycler HTTPContextRecycler // nil unless ctx implements it
}

// HTTPContextRecycler is implemented by a PluginContext that reuses the
// HTTP contexts it creates: the dispatcher hands each one back once the
// host has deleted its stream (proxy_on_delete). By then no callback of
// that stream runs again, and answers to the stream's own callouts are
// dropped (its context id is gone), but closures the filter gave those
// callouts still hold the context: a filter reuses only contexts that made
// none. A context allocated per request costs a guest heap allocation,
// and the collections that allocations bring, on every request.
type HTTPContextRecycler interface {
	RecycleHTTPContext(HTTPContext)
}

// plugin returns the plugin context id, or false.
func (d *dispatcher) plugin(id uint32) (pluginEntry, bool) {
	if id != 0 && d.lastPlugin.id == id {
		return d.lastPlugin, true
	}
	p, ok := d.plugins[id]
	if !ok {
		return pluginEntry{}, false
	}
	e := pluginEntry{id: id, ctx: p}
	e.recycler, _ = p.(HTTPContextRecycler)
	d.lastPlugin = e
	return e, true
}

// allocation is a buffer proxy_on_memory_allocate handed out.
type allocation struct {
	ptr uint32
	buf []byte
}

// maxAllocations bounds the unclaimed buffers kept: one the guest never
// claimed (its host call failed after allocating) is garbage once a few
// host calls have passed.
const maxAllocations = 16

func newDispatcher() *dispatcher {
	return &dispatcher{
		plugins:  map[uint32]PluginContext{},
		callouts: map[uint32]callout{},
	}
}

// rootOf is the plugin context a live context belongs to (itself for a
// plugin).
func (d *dispatcher) rootOf(id uint32) (uint32, bool) {
	if s := d.streams.get(id); s != nil {
		return s.root, true
	}
	if _, ok := d.plugin(id); ok {
		return id, true
	}
	return 0, false
}

// SetVMContext registers the filter. Call it from an init function of the
// filter's main package.
func SetVMContext(c VMContext) { vm.vmContext = c }

func (d *dispatcher) onVMStart(vmConfigurationSize uint32) uint32 {
	if d.vmContext == nil {
		return 0
	}
	return boolToU32(d.vmContext.OnVMStart(int(vmConfigurationSize)))
}

func (d *dispatcher) onConfigure(rootID, size uint32) uint32 {
	p, ok := d.plugins[rootID]
	if !ok {
		return 0
	}
	d.active = rootID
	return boolToU32(p.OnPluginStart(int(size)))
}

func (d *dispatcher) onContextCreate(id, parent uint32) {
	if parent == 0 {
		if d.vmContext == nil {
			return
		}
		d.plugins[id] = d.vmContext.NewPluginContext(id)
		if d.lastPlugin.id == id {
			d.lastPlugin = pluginEntry{}
		}
		return
	}
	p, ok := d.plugin(parent)
	if !ok {
		return
	}
	if h := p.ctx.NewHTTPContext(id); h != nil {
		d.streams.put(id, parent, h, p.recycler)
	}
}

// stream returns the context for a stream callback; a callback for an
// unknown stream continues rather than trapping the whole VM.
func (d *dispatcher) stream(id uint32) (HTTPContext, bool) {
	s := d.streams.get(id)
	if s == nil {
		return nil, false
	}
	d.active = id
	return s.http, true
}

func (d *dispatcher) onRequestHeaders(id, n, eos uint32) uint32 {
	if h, ok := d.stream(id); ok {
		return uint32(h.OnHTTPRequestHeaders(int(n), eos != 0))
	}
	return uint32(ActionContinue)
}

func (d *dispatcher) onRequestBody(id, size, eos uint32) uint32 {
	if h, ok := d.stream(id); ok {
		return uint32(h.OnHTTPRequestBody(int(size), eos != 0))
	}
	return uint32(ActionContinue)
}

func (d *dispatcher) onRequestTrailers(id, n uint32) uint32 {
	if h, ok := d.stream(id); ok {
		return uint32(h.OnHTTPRequestTrailers(int(n)))
	}
	return uint32(ActionContinue)
}

func (d *dispatcher) onResponseHeaders(id, n, eos uint32) uint32 {
	if h, ok := d.stream(id); ok {
		return uint32(h.OnHTTPResponseHeaders(int(n), eos != 0))
	}
	return uint32(ActionContinue)
}

func (d *dispatcher) onResponseBody(id, size, eos uint32) uint32 {
	if h, ok := d.stream(id); ok {
		return uint32(h.OnHTTPResponseBody(int(size), eos != 0))
	}
	return uint32(ActionContinue)
}

func (d *dispatcher) onResponseTrailers(id, n uint32) uint32 {
	if h, ok := d.stream(id); ok {
		return uint32(h.OnHTTPResponseTrailers(int(n)))
	}
	return uint32(ActionContinue)
}

func (d *dispatcher) onLog(id uint32) {
	if h, ok := d.stream(id); ok {
		h.OnHTTPStreamDone()
	}
}

func (d *dispatcher) onDone(id uint32) uint32 {
	if d.streams.get(id) != nil {
		return 1 // a stream has nothing to finish
	}
	if p, ok := d.plugins[id]; ok {
		d.active = id
		return boolToU32(p.OnPluginDone())
	}
	return 1
}

func (d *dispatcher) onDelete(id uint32) {
	if s, ok := d.streams.del(id); ok {
		if s.recycler != nil {
			s.recycler.RecycleHTTPContext(s.http)
		}
		return
	}
	delete(d.plugins, id)
	if d.lastPlugin.id == id {
		d.lastPlugin = pluginEntry{}
	}
}

func (d *dispatcher) onTick(rootID uint32) {
	if p, ok := d.plugin(rootID); ok {
		d.active = rootID
		p.ctx.OnTick()
	}
}

// takeCallout removes a pending callout and makes its caller the effective
// context. It reports false when the caller is gone (the stream ended
// before the answer came), in which case the answer is dropped, as the
// host may no longer act on that stream.
func (d *dispatcher) takeCallout(token uint32) (callout, bool) {
	c, ok := d.callouts[token]
	if !ok {
		return c, false
	}
	delete(d.callouts, token)
	if _, alive := d.rootOf(c.caller); !alive {
		return c, false
	}
	d.active = c.caller
	proxySetEffectiveContext(c.caller)
	return c, true
}

func (d *dispatcher) onHTTPCallResponse(token, numHeaders, bodySize, numTrailers uint32) {
	if c, ok := d.takeCallout(token); ok && c.http != nil {
		c.http(int(numHeaders), int(bodySize), int(numTrailers))
	}
}

func (d *dispatcher) onGRPCReceive(token, size uint32) {
	c, ok := d.takeCallout(token)
	if !ok || c.grpc == nil {
		return
	}
	body, err := getBuffer(BufferTypeGRPCReceiveBuffer, 0, size)
	if err != nil {
		c.grpc(uint32(13), "read grpc response: "+err.Error(), nil)
		return
	}
	c.grpc(0, "", body)
}

func (d *dispatcher) onGRPCClose(token, status uint32) {
	c, ok := d.takeCallout(token)
	if !ok || c.grpc == nil {
		return
	}
	code, msg := status, ""
	var retCode, ptr, size uint32
	if Status(proxyGetStatus(&retCode, &ptr, &size)) == StatusOK {
		code = retCode
		msg = string(d.claim(ptr, size))
	}
	if code == 0 {
		// A close without a message is a failure by definition for a unary
		// call; never report it as success.
		code = 2
	}
	c.grpc(code, msg, nil)
}

// allocate serves proxy_on_memory_allocate.
func (d *dispatcher) allocate(size uint32) uint32 {
	if size == 0 {
		size = 1
	}
	var b []byte
	if size <= maxArenaAlloc {
		if len(d.arena) < int(size) {
			d.arena = make([]byte, arenaChunk)
		}
		// Full slice expressions: an append to a claimed value must never
		// run into its neighbour.
		b, d.arena = d.arena[:size:size], d.arena[size:]
	} else {
		b = make([]byte, size)
	}
	p := addressOf(b)
	if len(d.allocations) == maxAllocations {
		d.allocations = append(d.allocations[:0], d.allocations[1:]...)
	}
	d.allocations = append(d.allocations, allocation{ptr: p, buf: b})
	return p
}

// claim returns the buffer the host filled for a host call and drops the
// reference that kept it alive. Memory the allocator never handed out
// reads as empty rather than being trusted.
func (d *dispatcher) claim(ptr, size uint32) []byte {
	if ptr == 0 {
		return nil
	}
	var b []byte
	for i := len(d.allocations) - 1; i >= 0; i-- {
		if d.allocations[i].ptr == ptr {
			b = d.allocations[i].buf
			last := len(d.allocations) - 1
			d.allocations[i] = d.allocations[last]
			d.allocations[last] = allocation{}
			d.allocations = d.allocations[:last]
			break
		}
	}
	if b == nil {
		return nil
	}
	if int(size) > len(b) {
		return b
	}
	return b[:size]
}

func boolToU32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// onQueueReady tells a plugin that implements QueueReadyHandler that a
// shared queue it registered has data.
func (d *dispatcher) onQueueReady(rootID, token uint32) {
	if p, ok := d.plugins[rootID]; ok {
		if h, ok := p.(QueueReadyHandler); ok {
			d.active = rootID
			h.OnQueueReady(token)
		}
	}
}
