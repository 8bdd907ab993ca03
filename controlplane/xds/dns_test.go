package xds_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
	"github.com/maestro-ml/maestro/controlplane/xds"
)

// dnsCluster is a cluster with the given endpoints spread over two
// weighted localities (the first endpoint in one, the rest in the other).
func dnsCluster(addrs ...string) *model.Cluster {
	c := &model.Cluster{Name: "fraud.v1", Protocol: model.ProtocolGRPC, Localities: []model.Locality{{Region: "eu", Weight: 3}}}
	for i, a := range addrs {
		e := model.Endpoint{Address: a, Port: 9000 + uint32(i), Weight: uint32(i + 1)}
		if i == 0 {
			c.Localities[0].Endpoints = append(c.Localities[0].Endpoints, e)
			continue
		}
		if len(c.Localities) == 1 {
			c.Localities = append(c.Localities, model.Locality{Region: "us", Weight: 5, Priority: 1})
		}
		c.Localities[1].Endpoints = append(c.Localities[1].Endpoints, e)
	}
	return c
}

// TestClusterDiscovery checks which discovery type each mix of addresses
// and client kind gets, that DNS clusters carry all their endpoints inline
// (localities, weights and priorities kept) and EDS ones none, and that
// every cluster built passes ValidateAll.
func TestClusterDiscovery(t *testing.T) {
	tests := map[string]struct {
		in        *model.Cluster
		proxyless bool
		want      clusterv3.Cluster_DiscoveryType
		err       string
	}{
		"envoy ip only":                 {in: dnsCluster("10.0.0.1", "10.0.0.2"), want: clusterv3.Cluster_EDS},
		"envoy ipv6":                    {in: dnsCluster("fd00::1"), want: clusterv3.Cluster_EDS},
		"envoy one host name":           {in: dnsCluster("fraud-v1.ml.svc.cluster.local"), want: clusterv3.Cluster_STRICT_DNS},
		"envoy several host names":      {in: dnsCluster("a.ml.svc", "b.ml.svc", "c.ml.svc"), want: clusterv3.Cluster_STRICT_DNS},
		"envoy ip and host name":        {in: dnsCluster("10.0.0.1", "localhost"), want: clusterv3.Cluster_STRICT_DNS},
		"proxyless ip only":             {in: dnsCluster("10.0.0.1", "10.0.0.2"), proxyless: true, want: clusterv3.Cluster_EDS},
		"proxyless one host name":       {in: dnsCluster("localhost"), proxyless: true, want: clusterv3.Cluster_LOGICAL_DNS},
		"proxyless two host names":      {in: dnsCluster("a.ml.svc", "b.ml.svc"), proxyless: true, err: "2 endpoints: proxyless gRPC accepts"},
		"proxyless ip and host name":    {in: dnsCluster("10.0.0.1", "a.ml.svc"), proxyless: true, err: "2 endpoints: proxyless gRPC accepts"},
		"proxyless host name and empty": {in: dnsCluster("a.ml.svc", ""), proxyless: true, err: "2 endpoints"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := xds.Cluster(tc.in, tc.proxyless)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, xds.ErrProxylessHostNames) {
					t.Fatalf("Cluster() = %v, want ErrProxylessHostNames containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Cluster() = %v", err)
			}
			if err := got.ValidateAll(); err != nil {
				t.Fatalf("ValidateAll() = %v", err)
			}
			if got.GetType() != tc.want {
				t.Fatalf("type = %v, want %v", got.GetType(), tc.want)
			}
			if xds.IsEDS(tc.in) != (tc.want == clusterv3.Cluster_EDS) {
				t.Errorf("IsEDS() = %v for a %v cluster", xds.IsEDS(tc.in), tc.want)
			}
			if tc.want == clusterv3.Cluster_EDS {
				if got.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil || got.GetLoadAssignment() != nil {
					t.Errorf("EDS cluster: eds config %v, load assignment %v; want ADS and none", got.GetEdsClusterConfig(), got.GetLoadAssignment())
				}
				return
			}
			if got.GetEdsClusterConfig() != nil {
				t.Errorf("DNS cluster has an EDS config %v", got.GetEdsClusterConfig())
			}
			if got.GetDnsLookupFamily() != clusterv3.Cluster_V4_PREFERRED {
				t.Errorf("dns lookup family = %v, want V4_PREFERRED", got.GetDnsLookupFamily())
			}
			// The inline assignment is exactly what EDS would have carried.
			diff(t, xds.Endpoints(tc.in), got.GetLoadAssignment())
		})
	}
}

// TestInlineEndpointsKeepWeights pins the STRICT_DNS assignment of a
// two-locality cluster field by field, so weights and priorities cannot
// be lost on the way.
func TestInlineEndpointsKeepWeights(t *testing.T) {
	got, err := xds.Cluster(dnsCluster("a.ml.svc", "b.ml.svc", "c.ml.svc"), false)
	if err != nil {
		t.Fatal(err)
	}
	la := got.GetLoadAssignment()
	type ep struct {
		region string
		lw, pr uint32
		addr   string
		port   uint32
		w      uint32
	}
	var eps []ep
	for _, l := range la.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			eps = append(eps, ep{l.GetLocality().GetRegion(), l.GetLoadBalancingWeight().GetValue(), l.GetPriority(), sa.GetAddress(), sa.GetPortValue(), e.GetLoadBalancingWeight().GetValue()})
		}
	}
	want := []ep{
		{"eu", 3, 0, "a.ml.svc", 9000, 1},
		{"us", 5, 1, "b.ml.svc", 9001, 2},
		{"us", 5, 1, "c.ml.svc", 9002, 3},
	}
	if !slices.Equal(eps, want) {
		t.Errorf("inline endpoints = %+v\nwant %+v", eps, want)
	}
}

// setHostNames replaces the addresses of cluster name in m by host names.
func setHostNames(m *model.Mesh, name string, hosts ...string) {
	c := m.Cluster(name)
	var eps []model.Endpoint
	for i, h := range hosts {
		eps = append(eps, model.Endpoint{Address: h, Port: 9000 + uint32(i)})
	}
	c.Localities = []model.Locality{{Region: "local", Weight: 1, Endpoints: eps}}
}

// TestForGroupHostNames checks a whole group: the DNS cluster has no EDS
// resource, the IP clusters keep theirs, and the group passes
// go-control-plane's Snapshot.Consistent().
func TestForGroupHostNames(t *testing.T) {
	tests := map[string]struct {
		group string
		hosts []string
		kind  clusterv3.Cluster_DiscoveryType
		err   string
	}{
		"gateway strict dns":    {group: modeltest.GatewayGroup, hosts: []string{"fraud-a.ml.svc", "fraud-b.ml.svc"}, kind: clusterv3.Cluster_STRICT_DNS},
		"proxyless logical dns": {group: modeltest.ProxylessGroup, hosts: []string{"localhost"}, kind: clusterv3.Cluster_LOGICAL_DNS},
		"proxyless several host names": {group: modeltest.ProxylessGroup, hosts: []string{"fraud-a.ml.svc", "fraud-b.ml.svc"},
			err: `group "proxyless": cluster "fraud.v1": 2 endpoints: proxyless gRPC accepts`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := modeltest.Sample(9000)
			setHostNames(m, "fraud.v1", tc.hosts...)
			res, err := xds.ForGroup(m, tc.group)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, xds.ErrProxylessHostNames) {
					t.Fatalf("ForGroup() = %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var dns []string
			for _, r := range res.Items[resource.ClusterType] {
				c := r.(*clusterv3.Cluster)
				if c.GetType() != clusterv3.Cluster_EDS {
					dns = append(dns, c.GetName()+"/"+c.GetType().String())
				}
			}
			if want := []string{"fraud.v1/" + tc.kind.String()}; !slices.Equal(dns, want) {
				t.Errorf("non-EDS clusters = %v, want %v", dns, want)
			}
			var eds []string
			for _, r := range res.Items[resource.EndpointType] {
				eds = append(eds, r.(*endpointv3.ClusterLoadAssignment).GetClusterName())
			}
			if slices.Contains(eds, "fraud.v1") || len(eds) != len(res.Items[resource.ClusterType])-1 {
				t.Errorf("endpoint resources = %v; want every cluster's but fraud.v1's", eds)
			}
			byType := map[resource.Type][]types.Resource{}
			for _, typ := range xds.Types() {
				byType[typ] = res.Items[typ]
			}
			snap, err := cache.NewSnapshot("1", byType)
			if err != nil {
				t.Fatal(err)
			}
			if err := snap.Consistent(); err != nil {
				t.Errorf("Consistent() = %v", err)
			}
		})
	}
}

// TestCacheFollowsDNSEndpoints checks that the cache, which keeps an EDS
// cluster across endpoint changes, rebuilds a DNS cluster (its endpoints
// are inline) and switches kinds when addresses do.
func TestCacheFollowsDNSEndpoints(t *testing.T) {
	steps := [][]string{
		{"fraud-a.ml.svc"},
		{"fraud-b.ml.svc"},        // a host name changes: rebuilt
		{"10.0.0.7"},              // DNS to EDS
		{"10.0.0.8"},              // EDS endpoint change: cluster reused
		{"fraud-a.ml.svc", "::1"}, // EDS to DNS
	}
	c := xds.NewCache()
	for i, hosts := range steps {
		m := modeltest.Sample(9000)
		setHostNames(m, "fraud.v1", hosts...)
		fresh, err := xds.ForGroup(m, modeltest.GatewayGroup)
		if err != nil {
			t.Fatal(err)
		}
		cached, err := c.ForGroup(m, modeltest.GatewayGroup)
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range []resource.Type{resource.ClusterType, resource.EndpointType} {
			if len(fresh.Items[typ]) != len(cached.Items[typ]) {
				t.Fatalf("step %d %s: %d fresh, %d cached", i, typ, len(fresh.Items[typ]), len(cached.Items[typ]))
			}
			for j := range fresh.Items[typ] {
				diff(t, fresh.Items[typ][j], cached.Items[typ][j])
			}
			if !slices.Equal(fresh.Versions[typ], cached.Versions[typ]) {
				t.Errorf("step %d %s versions differ: %v vs %v", i, typ, fresh.Versions[typ], cached.Versions[typ])
			}
		}
		c.Sweep()
	}
}
