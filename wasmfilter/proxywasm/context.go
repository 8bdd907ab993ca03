package proxywasm

// VMContext is the filter's per-VM entry point, registered with
// SetVMContext. The host creates one plugin (root) context per plugin
// configuration sharing the VM.
type VMContext interface {
	// OnVMStart is called once with the size of the VM configuration
	// (read it with GetVMConfiguration). Returning false fails the VM.
	OnVMStart(vmConfigurationSize int) bool
	// NewPluginContext creates the root context for one plugin.
	NewPluginContext(contextID uint32) PluginContext
}

// PluginContext is a plugin's root context: configuration, ticks and the
// factory for per-stream contexts.
type PluginContext interface {
	// OnPluginStart is called with the size of the plugin configuration
	// (read it with GetPluginConfiguration). Returning false rejects it.
	OnPluginStart(pluginConfigurationSize int) bool
	// OnPluginDone is called when the host shuts the plugin down; return
	// false to defer deletion until PluginDone is called.
	OnPluginDone() bool
	// OnTick is called every tick period set with SetTickPeriod.
	OnTick()
	// NewHTTPContext creates the context of one HTTP stream.
	NewHTTPContext(contextID uint32) HTTPContext
}

// HTTPContext receives one HTTP stream's callbacks, in the order the host
// sees the stream. Sizes are what the host reports: header counts and the
// size of the (possibly buffered) body.
type HTTPContext interface {
	OnHTTPRequestHeaders(numHeaders int, endOfStream bool) Action
	OnHTTPRequestBody(bodySize int, endOfStream bool) Action
	OnHTTPRequestTrailers(numTrailers int) Action
	OnHTTPResponseHeaders(numHeaders int, endOfStream bool) Action
	OnHTTPResponseBody(bodySize int, endOfStream bool) Action
	OnHTTPResponseTrailers(numTrailers int) Action
	// OnHTTPStreamDone is called from proxy_on_log, once the stream is
	// complete and before the context is deleted.
	OnHTTPStreamDone()
}

// DefaultVMContext accepts any VM configuration; embed it and override
// NewPluginContext.
type DefaultVMContext struct{}

// OnVMStart accepts the VM.
func (DefaultVMContext) OnVMStart(int) bool { return true }

// NewPluginContext returns a plugin that creates no HTTP contexts.
func (DefaultVMContext) NewPluginContext(uint32) PluginContext { return DefaultPluginContext{} }

// DefaultPluginContext does nothing; embed it and override what you need.
type DefaultPluginContext struct{}

// OnPluginStart accepts the configuration.
func (DefaultPluginContext) OnPluginStart(int) bool { return true }

// OnPluginDone lets the host delete the plugin at once.
func (DefaultPluginContext) OnPluginDone() bool { return true }

// OnTick does nothing.
func (DefaultPluginContext) OnTick() {}

// NewHTTPContext returns nil: the plugin does not filter HTTP.
func (DefaultPluginContext) NewHTTPContext(uint32) HTTPContext { return nil }

// DefaultHTTPContext continues every phase; embed it and override what you
// need.
type DefaultHTTPContext struct{}

// OnHTTPRequestHeaders continues.
func (DefaultHTTPContext) OnHTTPRequestHeaders(int, bool) Action { return ActionContinue }

// OnHTTPRequestBody continues.
func (DefaultHTTPContext) OnHTTPRequestBody(int, bool) Action { return ActionContinue }

// OnHTTPRequestTrailers continues.
func (DefaultHTTPContext) OnHTTPRequestTrailers(int) Action { return ActionContinue }

// OnHTTPResponseHeaders continues.
func (DefaultHTTPContext) OnHTTPResponseHeaders(int, bool) Action { return ActionContinue }

// OnHTTPResponseBody continues.
func (DefaultHTTPContext) OnHTTPResponseBody(int, bool) Action { return ActionContinue }

// OnHTTPResponseTrailers continues.
func (DefaultHTTPContext) OnHTTPResponseTrailers(int) Action { return ActionContinue }

// OnHTTPStreamDone does nothing.
func (DefaultHTTPContext) OnHTTPStreamDone() {}
