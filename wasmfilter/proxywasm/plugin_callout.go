package proxywasm

import "time"

// DispatchHTTPCallForPlugin is DispatchHTTPCall made on behalf of the
// current stream's plugin (root) context instead of the stream. Envoy ties
// a callout to the context that makes it and cancels a stream's callouts
// when the stream ends; a callout whose answer is wanted after the stream
// is over (a shadow copy compared later) must belong to the plugin. cb runs
// with the plugin context effective, so it must not touch stream state.
// Outside a stream callback it is DispatchHTTPCall.
func DispatchHTTPCallForPlugin(cluster string, headers [][2]string, body []byte, trailers [][2]string,
	timeout time.Duration, cb HTTPCallCallback) (uint32, error) {
	defer vm.actAsPlugin()()
	return DispatchHTTPCall(cluster, headers, body, trailers, timeout, cb)
}

// DispatchGRPCCallForPlugin is DispatchGRPCCall on behalf of the plugin
// context; see DispatchHTTPCallForPlugin.
func DispatchGRPCCallForPlugin(cluster, service, method string, metadata [][2]string, message []byte,
	timeout time.Duration, cb GRPCCallCallback) (uint32, error) {
	defer vm.actAsPlugin()()
	return DispatchGRPCCall(cluster, service, method, metadata, message, timeout, cb)
}

// actAsPlugin makes the active stream's plugin context the effective one
// and returns the function that switches back.
func (d *dispatcher) actAsPlugin() func() {
	prev := d.active
	root, ok := d.rootOf(prev)
	if !ok || root == prev {
		return func() {}
	}
	proxySetEffectiveContext(root)
	d.active = root
	return func() {
		proxySetEffectiveContext(prev)
		d.active = prev
	}
}
