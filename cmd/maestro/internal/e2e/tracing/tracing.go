// Package tracing holds the end-to-end tracing tests of the mesh: one
// trace from a client through the control plane's proxyless routing, the
// fanout filter's member callouts and an inference server's queueing,
// batching and model evaluation, recorded in memory and checked for shared
// trace IDs and parent links. docs/tracing.md lists the spans it relies on.
package tracing
