// Package slo is the SLO-metering proxy-wasm filter: per route and model it
// counts requests and errors (HTTP 5xx, gRPC status not OK, no response),
// records latency, and keeps rolling error-budget burn rates over a short
// and a long window, shared by every worker's VM through proxy-wasm shared
// data (compare-and-swap). It logs when a window's burn rate crosses its
// threshold and can put the remaining budget in a response header.
//
// The metering logic (Meter) is plain Go over three small interfaces
// (Metrics, Store, a log function), so it runs natively in tests and
// benchmarks; Register binds it to the proxy-wasm ABI for the .wasm built
// from ./cmd.
//
// # Stats
//
// Every stat name carries its tags in dotted form so Envoy's tag
// extraction can lift them out (see docs/filters.md for the
// stats_config.stats_tags to use); Envoy puts wasm stats under the
// "wasmcustom." namespace, which its Prometheus output strips, so they
// appear as maestro_slo_* series:
//
//	maestro_slo_requests_total.route.<route>.model.<model>        counter
//	maestro_slo_errors_total.route.<route>.model.<model>          counter
//	maestro_slo_latency_ms.route.<route>.model.<model>            histogram (ms)
//	maestro_slo_slow_requests_total.route.<route>.model.<model>.target.<p>_<ms>ms  counter
//	maestro_slo_burn_rate_x1000.route.<route>.model.<model>.window.<short|long>    gauge
//
// Tag values keep letters, digits, '_', '-', '/' and ':'; anything else
// (notably '.') becomes '_'. An empty route or model is tagged "none".
package slo
