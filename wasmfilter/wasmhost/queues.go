package wasmhost

import (
	"context"
	"slices"
	"sync"

	"github.com/tetratelabs/wazero/api"

	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// SharedQueues is the host's store of shared queues, cpp-host's
// SharedQueue: a queue is registered by name within a VM id, any VM may
// resolve and enqueue to it, and the registering VM's root context hears
// of new data through proxy_on_queue_ready, later and on that VM. Give
// several VMs the same SharedQueues to emulate one VM id across worker
// threads.
type SharedQueues struct {
	mu     sync.Mutex
	next   uint32
	tokens map[queueKey]uint32
	queues map[uint32]*sharedQueue
}

type queueKey struct{ vmID, name string }

type sharedQueue struct {
	items     [][]byte
	owner     *VM
	contextID uint32
}

// NewSharedQueues returns an empty store.
func NewSharedQueues() *SharedQueues {
	return &SharedQueues{tokens: map[queueKey]uint32{}, queues: map[uint32]*sharedQueue{}}
}

// register creates the queue or, as cpp-host does, hands an existing one
// (and its data) to the new registrant.
func (q *SharedQueues) register(vmID, name string, owner *VM, contextID uint32) uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := queueKey{vmID, name}
	token, ok := q.tokens[k]
	if !ok {
		for {
			q.next++
			if _, used := q.queues[q.next]; q.next != 0 && !used {
				break
			}
		}
		token = q.next
		q.tokens[k] = token
		q.queues[token] = &sharedQueue{}
	}
	sq := q.queues[token]
	sq.owner, sq.contextID = owner, contextID
	return token
}

func (q *SharedQueues) resolve(vmID, name string) (uint32, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	token, ok := q.tokens[queueKey{vmID, name}]
	return token, ok
}

func (q *SharedQueues) enqueue(token uint32, data []byte) pw.Status {
	q.mu.Lock()
	sq, ok := q.queues[token]
	if !ok {
		q.mu.Unlock()
		return pw.StatusNotFound
	}
	sq.items = append(sq.items, slices.Clone(data))
	owner, contextID := sq.owner, sq.contextID
	q.mu.Unlock()
	if owner != nil {
		owner.notifyQueue(contextID, token)
	}
	return pw.StatusOK
}

func (q *SharedQueues) dequeue(token uint32) ([]byte, pw.Status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	sq, ok := q.queues[token]
	if !ok {
		return nil, pw.StatusNotFound
	}
	if len(sq.items) == 0 {
		return nil, pw.StatusEmpty
	}
	v := sq.items[0]
	sq.items = sq.items[1:]
	return v, pw.StatusOK
}

// queueReady is a pending proxy_on_queue_ready call.
type queueReady struct{ contextID, token uint32 }

// notifyQueue records that a queue of this VM has data; it may be called
// from any goroutine, including inside another VM's guest call.
func (vm *VM) notifyQueue(contextID, token uint32) {
	vm.qmu.Lock()
	vm.ready = append(vm.ready, queueReady{contextID, token})
	vm.qmu.Unlock()
	select {
	case vm.wake <- struct{}{}:
	default:
	}
}

// DeliverQueueReady runs proxy_on_queue_ready for every queue notification
// pending on this VM, as the worker's dispatcher does, and returns at once
// when there is none. AwaitCallouts and AwaitResume also deliver them.
//
// # Errors
// A callback traps.
func (vm *VM) DeliverQueueReady() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.deliverQueuedLocked()
}

func (vm *VM) deliverQueuedLocked() error {
	vm.qmu.Lock()
	ready := vm.ready
	vm.ready = nil
	vm.qmu.Unlock()
	if len(ready) > 0 {
		// A queue callback may settle a stream another goroutine waits on.
		defer vm.advance()
	}
	for _, r := range ready {
		vm.effective = r.contextID
		if _, err := vm.call(expQueueReady, uint64(r.contextID), uint64(r.token)); err != nil {
			return err
		}
		if err := vm.afterCall(); err != nil {
			return err
		}
	}
	return nil
}

// queueContext is the root context a registration belongs to: a stream
// registers for its plugin's root context, as in cpp-host.
func (vm *VM) queueContext() uint32 {
	if _, ok := vm.streams[vm.effective]; ok {
		return vm.rootID
	}
	return vm.effective
}

func hostRegisterSharedQueue(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	name, ok := readString(m, u32(p[0]), u32(p[1]))
	if !ok {
		return pw.StatusInvalidMemoryAccess
	}
	token := vm.cfg.Queues.register(vm.cfg.VMID, name, vm, vm.queueContext())
	return okIf(m.Memory().WriteUint32Le(u32(p[2]), token))
}

func hostResolveSharedQueue(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	vmID, ok1 := readString(m, u32(p[0]), u32(p[1]))
	name, ok2 := readString(m, u32(p[2]), u32(p[3]))
	if !ok1 || !ok2 {
		return pw.StatusInvalidMemoryAccess
	}
	if vmID == "" {
		vmID = vm.cfg.VMID
	}
	token, ok := vm.cfg.Queues.resolve(vmID, name)
	if !ok {
		return pw.StatusNotFound
	}
	return okIf(m.Memory().WriteUint32Le(u32(p[4]), token))
}

func hostEnqueueSharedQueue(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	data, ok := read(m, u32(p[1]), u32(p[2]))
	if !ok {
		return pw.StatusInvalidMemoryAccess
	}
	return vm.cfg.Queues.enqueue(u32(p[0]), data)
}

func hostDequeueSharedQueue(ctx context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	data, st := vm.cfg.Queues.dequeue(u32(p[0]))
	if st != pw.StatusOK {
		return st
	}
	return vm.returnBytes(ctx, m, data, u32(p[1]), u32(p[2]))
}
