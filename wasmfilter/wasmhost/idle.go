package wasmhost

// Idle says whether the VM has no callout answer in flight and no queue
// notification pending: a dispatcher (AwaitCallouts) would have nothing to
// deliver, so a caller can skip starting one after every stream.
func (vm *VM) Idle() bool {
	vm.mu.Lock()
	n := vm.inflight
	vm.mu.Unlock()
	vm.qmu.Lock()
	q := len(vm.ready)
	vm.qmu.Unlock()
	return n == 0 && q == 0
}
