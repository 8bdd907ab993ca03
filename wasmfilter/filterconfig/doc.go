// Package filterconfig holds the plugin configurations of Maestro's wasm
// filters: the JSON documents the control plane serialises into ECDS
// resources and the filters parse when Envoy configures them.
//
// It imports nothing outside the standard library, so both the control
// plane and the filters compiled to wasip1 can use it. Every type has JSON
// tags, and every configuration has a Validate method that reports all
// problems at once, each naming its field path (e.g.
// "routes[0].members[1].cluster: must not be empty").
package filterconfig
