package istio

import (
	"maps"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// destinationRules renders one DestinationRule per Service: a subset per
// version, the circuit-breaker limits, outlier detection, and Istio's own
// mTLS unless the mesh disables it.
func (r *renderer) destinationRules() []Resource {
	var out []Resource
	for _, s := range r.pm.Services {
		dr := &networking.DestinationRule{Host: r.host(s.Metadata.Name), TrafficPolicy: r.trafficPolicy(&s.Spec)}
		for _, v := range s.Spec.Versions {
			dr.Subsets = append(dr.Subsets, &networking.Subset{Name: v.Name, Labels: maps.Clone(v.Labels)})
		}
		out = append(out, Resource{APIVersion: NetworkingAPIVersion, Kind: "DestinationRule", Name: s.Metadata.Name, Namespace: namespaceOf(s.Metadata), Spec: dr})
	}
	sortResources(out)
	return out
}

func (r *renderer) trafficPolicy(sp *policy.ServiceSpec) *networking.TrafficPolicy {
	tp := &networking.TrafficPolicy{ConnectionPool: &networking.ConnectionPoolSettings{
		Tcp: &networking.ConnectionPoolSettings_TCPSettings{},
	}}
	if sp.ConnectTimeout > 0 {
		tp.ConnectionPool.Tcp.ConnectTimeout = durationpb.New(sp.ConnectTimeout.D())
	}
	if l := sp.ConnectionLimits; l != nil {
		tp.ConnectionPool.Tcp.MaxConnections = int32(l.MaxConnections)
		if l.MaxPendingRequests != 0 || l.MaxRequests != 0 || l.MaxRetries != 0 {
			tp.ConnectionPool.Http = &networking.ConnectionPoolSettings_HTTPSettings{
				Http1MaxPendingRequests: int32(l.MaxPendingRequests),
				Http2MaxRequests:        int32(l.MaxRequests),
				MaxRetries:              int32(l.MaxRetries),
			}
		}
	}
	if o := sp.OutlierDetection; o != nil {
		od := &networking.OutlierDetection{MaxEjectionPercent: int32(o.MaxEjectionPercent)}
		if o.Consecutive5xx != 0 {
			od.Consecutive_5XxErrors = wrapperspb.UInt32(o.Consecutive5xx)
		}
		if o.Interval > 0 {
			od.Interval = durationpb.New(o.Interval.D())
		}
		if o.BaseEjectionTime > 0 {
			od.BaseEjectionTime = durationpb.New(o.BaseEjectionTime.D())
		}
		tp.OutlierDetection = od
	}
	if r.pm.Config.Spec.MTLS.Mode != policy.MTLSDisable {
		tp.Tls = &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL}
	}
	return tp
}
