package proxywasm

import (
	"testing"
)

// recorder is a filter that records which callbacks reached it.
type recorder struct {
	DefaultVMContext
	calls   *[]string
	rejects bool
}

func (r recorder) NewPluginContext(id uint32) PluginContext {
	return recPlugin{calls: r.calls, rejects: r.rejects}
}

type recPlugin struct {
	DefaultPluginContext
	calls   *[]string
	rejects bool
}

func (p recPlugin) OnPluginStart(int) bool { *p.calls = append(*p.calls, "start"); return !p.rejects }

func (p recPlugin) OnTick() { *p.calls = append(*p.calls, "tick") }

func (p recPlugin) NewHTTPContext(id uint32) HTTPContext { return recStream{calls: p.calls} }

type recStream struct {
	DefaultHTTPContext
	calls *[]string
}

func (s recStream) OnHTTPRequestHeaders(n int, eos bool) Action {
	if eos {
		*s.calls = append(*s.calls, "headers-eos")
	} else {
		*s.calls = append(*s.calls, "headers")
	}
	return ActionPause
}

func (s recStream) OnHTTPStreamDone() { *s.calls = append(*s.calls, "done") }

func TestDispatcherRoutesCallbacksByContext(t *testing.T) {
	var calls []string
	d := newDispatcher()
	d.vmContext = recorder{calls: &calls}
	if d.onVMStart(0) != 1 {
		t.Fatal("vm start rejected")
	}
	d.onContextCreate(1, 0)
	if d.onConfigure(1, 0) != 1 {
		t.Fatal("configure rejected")
	}
	d.onContextCreate(2, 1)
	if got := d.onRequestHeaders(2, 3, 1); got != uint32(ActionPause) {
		t.Fatalf("action = %d", got)
	}
	if d.active != 2 {
		t.Fatalf("active context = %d, want 2", d.active)
	}
	// Callbacks for unknown streams continue rather than trap.
	if got := d.onRequestHeaders(99, 1, 0); got != uint32(ActionContinue) {
		t.Fatalf("unknown stream action = %d", got)
	}
	d.onTick(1)
	d.onLog(2)
	d.onDelete(2)
	d.onLog(2) // deleted: nothing reaches the filter
	want := []string{"start", "headers-eos", "tick", "done"}
	if len(calls) != len(want) {
		t.Fatalf("calls = %q, want %q", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Fatalf("calls = %q, want %q", calls, want)
		}
	}
}

func TestDispatcherRejectsWithoutFilterOrOnBadConfig(t *testing.T) {
	d := newDispatcher()
	if d.onVMStart(0) != 0 {
		t.Fatal("a VM with no registered filter must fail to start")
	}
	var calls []string
	d.vmContext = recorder{calls: &calls, rejects: true}
	d.onContextCreate(1, 0)
	if d.onConfigure(1, 10) != 0 {
		t.Fatal("rejected configuration reported as accepted")
	}
	if d.onConfigure(7, 10) != 0 {
		t.Fatal("configure of an unknown root context accepted")
	}
}

func TestCalloutToEndedStreamIsDropped(t *testing.T) {
	var calls []string
	d := newDispatcher()
	d.vmContext = recorder{calls: &calls}
	d.onContextCreate(1, 0)
	d.onContextCreate(2, 1)
	d.onContextCreate(3, 1)
	got := 0
	d.callouts[10] = callout{caller: 2, http: func(int, int, int) { got++ }}
	d.callouts[11] = callout{caller: 3, http: func(int, int, int) { got += 10 }}
	d.callouts[12] = callout{caller: 1, http: func(int, int, int) { got += 100 }}
	d.onDelete(3)
	for _, token := range []uint32{10, 11, 12, 10, 99} {
		d.onHTTPCallResponse(token, 1, 0, 0)
	}
	// 10 once (its stream lives), 11 dropped (stream gone), 12 on the root
	// context; repeats and unknown tokens do nothing.
	if got != 101 {
		t.Fatalf("callbacks ran to %d, want 101", got)
	}
	if len(d.callouts) != 0 {
		t.Fatalf("%d callouts left pending", len(d.callouts))
	}
}

func TestAllocationsStayReachableUntilClaimed(t *testing.T) {
	d := newDispatcher()
	p := d.allocate(8)
	if p == 0 || len(d.allocations) != 1 {
		t.Fatalf("allocate: ptr %d, %d held", p, len(d.allocations))
	}
	copy(d.allocations[0].buf, "abcdefgh")
	if got := string(d.claim(p, 3)); got != "abc" {
		t.Fatalf("claim = %q", got)
	}
	if len(d.allocations) != 0 {
		t.Fatal("claimed buffer still held")
	}
	if d.claim(p, 3) != nil || d.claim(0, 0) != nil {
		t.Fatal("claiming an unknown or null pointer must read as empty")
	}
	if d.allocate(0) == 0 {
		t.Fatal("zero-size allocation returned null")
	}
}

// TestArenaValuesAreIndependent checks that small buffers carved from the
// shared chunk never overlap: growing a claimed value must not run into
// the next one, and many values outlast the chunk they started in.
func TestArenaValuesAreIndependent(t *testing.T) {
	d := newDispatcher()
	var vals [][]byte
	for i := range 600 { // more than one chunk's worth
		size := uint32(1 + i%40)
		p := d.allocate(size)
		b := d.claim(p, size)
		if len(b) != int(size) {
			t.Fatalf("claim %d: %d bytes, want %d", i, len(b), size)
		}
		for j := range b {
			b[j] = byte(i)
		}
		vals = append(vals, b)
	}
	vals[0] = append(vals[0], 0xff, 0xff, 0xff) // grows past its own room
	for i, b := range vals {
		for j := range b[:1+i%40] {
			if b[j] != byte(i) {
				t.Fatalf("value %d byte %d = %d, want %d: buffers overlap", i, j, b[j], byte(i))
			}
		}
	}
	if len(d.allocations) != 0 {
		t.Fatalf("%d claimed buffers still held", len(d.allocations))
	}
}

// TestUnclaimedAllocationsAreBounded: buffers the guest never claims (a
// host call failing after it allocated) are dropped oldest first.
func TestUnclaimedAllocationsAreBounded(t *testing.T) {
	d := newDispatcher()
	first := d.allocate(8)
	for range 3 * maxAllocations {
		d.allocate(8)
	}
	if len(d.allocations) != maxAllocations {
		t.Fatalf("%d unclaimed buffers held, want %d", len(d.allocations), maxAllocations)
	}
	if d.claim(first, 8) != nil {
		t.Fatal("the oldest unclaimed buffer is still claimable")
	}
	last := d.allocate(8)
	if got := d.claim(last, 8); len(got) != 8 {
		t.Fatalf("newest buffer: claim returned %d bytes", len(got))
	}
}

// poolVM makes plugins that recycle their HTTP contexts.
type poolVM struct {
	DefaultVMContext
	made *int // plugins made
}

func (v poolVM) NewPluginContext(uint32) PluginContext {
	*v.made++
	return &poolPlugin{gen: *v.made}
}

type poolPlugin struct {
	DefaultPluginContext
	gen      int // which plugin this is, for telling a replaced one apart
	free     FreeList[*poolStream]
	new      int // contexts allocated
	recycled []*poolStream
}

type poolStream struct {
	DefaultHTTPContext
	gen, uses int
}

func (p *poolPlugin) NewHTTPContext(uint32) HTTPContext {
	if s, ok := p.free.Get(); ok {
		s.uses++
		return s
	}
	p.new++
	return &poolStream{gen: p.gen, uses: 1}
}

func (p *poolPlugin) RecycleHTTPContext(h HTTPContext) {
	s := h.(*poolStream)
	p.recycled = append(p.recycled, s)
	p.free.Put(s)
}

// TestStreamContextsAreHandedBackAfterDelete: a plugin that recycles its
// HTTP contexts gets each back once its stream is deleted, never before
// and never twice; and a plugin deleted and created again under the same
// id makes the streams from then on, not the one remembered.
func TestStreamContextsAreHandedBackAfterDelete(t *testing.T) {
	made := 0
	d := newDispatcher()
	d.vmContext = poolVM{made: &made}
	d.onContextCreate(1, 0)
	first := d.plugins[1].(*poolPlugin)
	for id := uint32(2); id < 12; id++ {
		d.onContextCreate(id, 1)
		d.onRequestHeaders(id, 0, 1)
		d.onLog(id)
		if d.onDone(id) != 1 {
			t.Fatal("a stream's done must let the host delete it")
		}
		if len(first.recycled) != int(id-2) {
			t.Fatalf("stream %d: %d contexts handed back before its delete, want %d", id, len(first.recycled), id-2)
		}
		d.onDelete(id)
		d.onDelete(id) // a repeat hands nothing back
		if len(first.recycled) != int(id-1) {
			t.Fatalf("stream %d: %d contexts handed back after its delete, want %d", id, len(first.recycled), id-1)
		}
	}
	if first.new != 1 || first.recycled[9].uses != 10 {
		t.Fatalf("%d contexts made, the last used %d times: want one made and used by all ten streams",
			first.new, first.recycled[9].uses)
	}

	d.onDelete(1)
	d.onContextCreate(20, 1) // the plugin is gone: no stream
	if _, ok := d.stream(20); ok {
		t.Fatal("a stream was made for a deleted plugin")
	}
	d.onContextCreate(1, 0)
	d.onContextCreate(21, 1)
	h, ok := d.stream(21)
	if !ok || h.(*poolStream).gen != 2 {
		t.Fatalf("stream of the new plugin 1: %v %v, want one made by the second plugin", h, ok)
	}
}
