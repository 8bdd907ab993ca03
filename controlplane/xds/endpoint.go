package xds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// Endpoints creates the EDS ClusterLoadAssignment of c. Every locality has
// a locality and a non-zero weight, which proxyless gRPC requires.
func Endpoints(c *model.Cluster) *endpointv3.ClusterLoadAssignment {
	out := &endpointv3.ClusterLoadAssignment{ClusterName: c.Name, Endpoints: make([]*endpointv3.LocalityLbEndpoints, 0, len(c.Localities))}
	for i := range c.Localities {
		out.Endpoints = append(out.Endpoints, localityEndpoints(&c.Localities[i]))
	}
	return out
}

// localityEndpoints creates one locality's endpoints.
func localityEndpoints(l *model.Locality) *endpointv3.LocalityLbEndpoints {
	out := &endpointv3.LocalityLbEndpoints{
		Locality:            &corev3.Locality{Region: l.Region, Zone: l.Zone, SubZone: l.SubZone},
		LoadBalancingWeight: wrapperspb.UInt32(nonZero(l.Weight)),
		Priority:            l.Priority,
		LbEndpoints:         make([]*endpointv3.LbEndpoint, 0, len(l.Endpoints)),
	}
	for _, e := range l.Endpoints {
		out.LbEndpoints = append(out.LbEndpoints, lbEndpoint(e))
	}
	return out
}

// lbEndpoint creates one endpoint.
func lbEndpoint(e model.Endpoint) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(e.Address, e.Port)}},
		LoadBalancingWeight: wrapperspb.UInt32(nonZero(e.Weight)),
	}
}
