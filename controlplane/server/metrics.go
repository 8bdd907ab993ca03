package server

import (
	"fmt"

	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/maestro-ml/maestro/internal/telemetry"
)

const subsystem = "controlplane"

// metrics are the server's maestro_controlplane_* series. Labels are
// bounded: type is one of the xDS types, group is a node group of the
// policy, kind is sotw or delta, resource is a resource name the policy
// produced.
type metrics struct {
	streams        *prometheus.GaugeVec
	connectedNodes prometheus.Gauge
	requests       *prometheus.CounterVec
	pushes         *prometheus.CounterVec
	acks           *prometheus.CounterVec
	nacks          *prometheus.CounterVec
	nacked         *prometheus.GaugeVec
	rejected       *prometheus.GaugeVec
	refusals       *prometheus.CounterVec
	handshakes     *prometheus.CounterVec
	snapshots      *prometheus.CounterVec
	version        *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: telemetry.Namespace, Subsystem: subsystem, Name: name, Help: help}
	}
	m := &metrics{
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("streams",
			"Open xDS streams by kind (sotw or delta).")), []string{"kind"}),
		connectedNodes: prometheus.NewGauge(prometheus.GaugeOpts(opts("connected_nodes",
			"Distinct node IDs with at least one open xDS stream."))),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts(opts("requests_total",
			"xDS discovery requests received, by resource type.")), []string{"type"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts(opts("pushes_total",
			"xDS responses sent, by resource type.")), []string{"type"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts(opts("acks_total",
			"xDS responses acknowledged by nodes, by resource type.")), []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts(opts("nacks_total",
			"xDS responses rejected by nodes (NACK), by resource type.")), []string{"type"}),
		nacked: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("nacked_nodes",
			"Nodes whose latest response of a type is NACKed, by resource type.")), []string{"type"}),
		rejected: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("rejected_resources",
			"Nodes whose latest response of a type rejected the resource (NACK naming it; the other resources of the response were applied).")), []string{"type", "resource"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts(opts("node_refusals_total",
			"xDS streams refused because the node claims a node group its client certificate's identity does not belong to.")), []string{"reason"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts(opts("tls_handshake_failures_total",
			"Refused TLS handshakes on the xDS port, by reason (no_certificate, unknown_authority, expired, invalid_certificate, identity_not_allowed, not_tls, no_handshake, other).")), []string{"reason"}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts(opts("snapshot_updates_total",
			"Snapshots set, by node group (unchanged groups are not counted).")), []string{"group"}),
		version: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("version_info",
			"The version of the set being served (value 1).")), []string{"version"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.streams, m.connectedNodes, m.requests, m.pushes,
		m.acks, m.nacks, m.nacked, m.rejected, m.refusals, m.handshakes, m.snapshots, m.version} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register: %w", err)
		}
	}
	return m, nil
}

// TypeName returns the short name of an xDS type URL ("listener", ...);
// unknown types collapse to "other" to keep label values bounded.
func TypeName(typeURL string) string {
	switch typeURL {
	case resource.ListenerType:
		return "listener"
	case resource.RouteType:
		return "route"
	case resource.ClusterType:
		return "cluster"
	case resource.EndpointType:
		return "endpoint"
	case resource.SecretType:
		return "secret"
	case resource.ExtensionConfigType:
		return "extension_config"
	case resource.RuntimeType:
		return "runtime"
	case resource.ScopedRouteType:
		return "scoped_route"
	case resource.VirtualHostType:
		return "virtual_host"
	case "":
		return "none"
	default:
		return "other"
	}
}
