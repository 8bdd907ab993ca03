package proxywasm

// QueueReadyHandler is implemented by a PluginContext that registers
// shared queues: the host calls OnQueueReady (proxy_on_queue_ready) on the
// registering plugin after data is enqueued, later and on its own worker.
type QueueReadyHandler interface {
	OnQueueReady(queueID uint32)
}

// RegisterSharedQueue creates (or takes over) the queue called name in
// this VM id and returns its id; OnQueueReady of the calling plugin then
// hears of new data.
func RegisterSharedQueue(name string) (uint32, error) {
	var id uint32
	if err := Status(proxyRegisterSharedQueue(strPtr(name), uint32(len(name)), &id)).Err(); err != nil {
		return 0, hostError("register shared queue", name, err)
	}
	return id, nil
}

// ResolveSharedQueue returns the id of a queue registered in vmID ("" for
// this VM's own id).
//
// # Errors
// ErrNotFound when no plugin registered it.
func ResolveSharedQueue(vmID, name string) (uint32, error) {
	var id uint32
	st := proxyResolveSharedQueue(strPtr(vmID), uint32(len(vmID)), strPtr(name), uint32(len(name)), &id)
	if err := Status(st).Err(); err != nil {
		return 0, hostError("resolve shared queue", name, err)
	}
	return id, nil
}

// EnqueueSharedQueue appends data to the queue.
//
// # Errors
// ErrNotFound for an unknown queue id.
func EnqueueSharedQueue(id uint32, data []byte) error {
	if err := Status(proxyEnqueueSharedQueue(id, ptr(data), uint32(len(data)))).Err(); err != nil {
		return hostError("enqueue shared queue", "", err)
	}
	return nil
}

// DequeueSharedQueue takes the oldest item off the queue.
//
// # Errors
// ErrEmpty when the queue is empty, ErrNotFound for an unknown queue id.
func DequeueSharedQueue(id uint32) ([]byte, error) {
	var p, n uint32
	if err := Status(proxyDequeueSharedQueue(id, &p, &n)).Err(); err != nil {
		return nil, hostError("dequeue shared queue", "", err)
	}
	return vm.claim(p, n), nil
}
