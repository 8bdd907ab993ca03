package wasmtest

import "github.com/maestro-ml/maestro/wasmfilter/wasmhost"

// Aliases of the host's types, so filter tests need only this package.
type (
	// Module is a compiled proxy-wasm module (wasmhost.Module).
	Module = wasmhost.Module
	// VM is one instance of a Module (wasmhost.VM).
	VM = wasmhost.VM
	// Config describes one VM and its plugin (wasmhost.Config).
	Config = wasmhost.Config
	// Cluster is where callouts to one cluster name go (wasmhost.Cluster).
	Cluster = wasmhost.Cluster
	// Stream is one HTTP stream's context in a VM (wasmhost.Stream).
	Stream = wasmhost.Stream
	// Request is a downstream request for RoundTrip (wasmhost.Request).
	Request = wasmhost.Request
	// Response is what the downstream client receives (wasmhost.Response).
	Response = wasmhost.Response
	// LocalResponse is a proxy_send_local_response call (wasmhost.LocalResponse).
	LocalResponse = wasmhost.LocalResponse
	// Stats is the host's stat store (wasmhost.Stats).
	Stats = wasmhost.Stats
	// Metric is one host stat (wasmhost.Metric).
	Metric = wasmhost.Metric
	// SharedData is the host's key-value store (wasmhost.SharedData).
	SharedData = wasmhost.SharedData
	// LogEntry is one proxy_log call (wasmhost.LogEntry).
	LogEntry = wasmhost.LogEntry
	// SharedQueues is the host's store of shared queues (wasmhost.SharedQueues).
	SharedQueues = wasmhost.SharedQueues
	// StreamOptions is what the embedder supplies for one stream (wasmhost.StreamOptions).
	StreamOptions = wasmhost.StreamOptions
	// Upstreams is how the host reaches clusters (wasmhost.Upstreams).
	Upstreams = wasmhost.Upstreams
	// GRPCCall is one proxy_grpc_call (wasmhost.GRPCCall).
	GRPCCall = wasmhost.GRPCCall
)

// Errors of the host, re-exported for errors.Is in filter tests.
var (
	ErrStalled = wasmhost.ErrStalled
	ErrClosed  = wasmhost.ErrClosed
)

// NewStats returns an empty stat store (wasmhost.NewStats).
func NewStats() *Stats { return wasmhost.NewStats() }

// NewSharedQueues returns an empty shared-queue store (wasmhost.NewSharedQueues).
func NewSharedQueues() *SharedQueues { return wasmhost.NewSharedQueues() }

// NewSharedData returns an empty shared-data store (wasmhost.NewSharedData).
func NewSharedData() *SharedData { return wasmhost.NewSharedData() }
