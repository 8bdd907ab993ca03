// Package gateway tests the built-in gateway (`maestro gateway`) from the
// outside: gateways started against a real control plane, in front of real
// inference servers, driven over the network by gRPC clients, the control
// plane's closed loop (rollouts, adaptive ensembles) and a real Prometheus.
// The gateway package's own tests, against fake control planes and minimal
// upstreams, stay beside it in internal/gateway. It has no non-test code.
package gateway
