package wasmtest

import "github.com/maestro-ml/maestro/wasmfilter/wasmhost"

// Aliases of the host's types, so filter tests need only this package.
type (
	Module        = wasmhost.Module
	VM            = wasmhost.VM
	Config        = wasmhost.Config
	Cluster       = wasmhost.Cluster
	Stream        = wasmhost.Stream
	Request       = wasmhost.Request
	Response      = wasmhost.Response
	LocalResponse = wasmhost.LocalResponse
	Stats         = wasmhost.Stats
	Metric        = wasmhost.Metric
	SharedData    = wasmhost.SharedData
	LogEntry      = wasmhost.LogEntry
	SharedQueues  = wasmhost.SharedQueues
	StreamOptions = wasmhost.StreamOptions
	Upstreams     = wasmhost.Upstreams
	GRPCCall      = wasmhost.GRPCCall
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
