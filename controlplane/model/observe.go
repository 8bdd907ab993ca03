package model

import (
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// ObserverCluster is the cluster of the control plane's observation
// endpoint (its admin port), which the fanout filter of an adaptive
// ensemble posts the members' answers to. '|' cannot occur in a service
// or version name, so it collides with no service's cluster.
const ObserverCluster = "maestro|observer"

// Observer is where proxies reach the control plane's observation
// endpoint, and how much of each adaptive ensemble's traffic they report.
type Observer struct {
	// Endpoint is the control plane's admin address as the proxies reach
	// it: an IP or a host name, and a port.
	Endpoint Endpoint
	// Percent of an adaptive route's requests observed, in (0, 100].
	Percent float64
}

// MemberName names an ensemble member in observations, audit events and
// status: its cluster and model, e.g. "fraud.v1/fraud".
func MemberName(service, version, model string) string {
	return ClusterName(service, version) + "/" + model
}

// isAdaptive reports whether e's weights follow its members' quality.
func isAdaptive(e *policy.Ensemble) bool {
	return e != nil && e.Weights == policy.WeightsAdaptive && e.Mode != policy.ModeSequence
}

// hasAdaptive reports whether any route of pm is an adaptive ensemble.
func hasAdaptive(pm *policy.Mesh) bool {
	for _, r := range pm.Routes {
		if isAdaptive(r.Spec.Ensemble) {
			return true
		}
	}
	return false
}

// observe makes f, the fanout of route r as caller c sees it, post its
// members' answers: each member gets its name in observations, found by
// the cluster c reaches it by (plain or an mTLS copy) and its model.
func (b *builder) observe(f *Fanout, r *policy.Route, c caller) {
	for i := range f.Members {
		m := &f.Members[i]
		for _, pmem := range r.Spec.Ensemble.Members {
			if pmem.Model == m.Model && b.clusterFor(c, pmem.Service, pmem.Version) == m.Cluster {
				m.Name = MemberName(pmem.Service, pmem.Version, pmem.Model)
				break
			}
		}
	}
	f.Observe = &FanoutObserve{Cluster: ObserverCluster, Route: r.Metadata.Name, Percent: b.opts.Observer.Percent}
}

// observerCluster is the cluster of o's endpoint: plain HTTP/1.1, as the
// admin port serves.
func observerCluster(o *Observer) Cluster {
	return Cluster{Name: ObserverCluster, Protocol: ProtocolHTTP,
		Localities: []Locality{{Weight: 1, Endpoints: []Endpoint{o.Endpoint}}}}
}
