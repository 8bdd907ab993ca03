// Package controlplane tests the control plane from the outside: real
// gRPC-Go xDS clients (the xds resolver, proxyless) and raw ADS streams
// against a control plane started with controlplane.Run, routing to real
// inference servers started with inference/inferencetest. It has no
// non-test code.
package controlplane
