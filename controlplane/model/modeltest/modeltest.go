// Package modeltest builds IR meshes for tests and benchmarks of the
// packages downstream of the model (xds, snapshot, server), so they can be
// exercised without going through policy files.
package modeltest

import (
	"fmt"
	"time"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// Node groups of the Sample mesh.
const (
	GatewayGroup   = "gateway"
	SidecarGroup   = "sidecar-fraud"
	ProxylessGroup = "proxyless"
	// GRPCServerGroup holds xDS-enabled gRPC servers of the fraud service.
	GRPCServerGroup = "grpc-server-fraud"
)

// GRPCServerListener is the listener name gRPC's default bootstrap template
// gives a server on 0.0.0.0:9000.
const GRPCServerListener = "grpc/server?xds.resource.listening_address=0.0.0.0:9000"

// ModelHeader is the request header carrying the model name in Sample.
const ModelHeader = "x-maestro-model"

// inferPath is the Open Inference Protocol's gRPC inference method.
const inferPath = "/inference.GRPCInferenceService/ModelInfer"

// Sample returns a small, normalized mesh that uses every IR feature: a
// gateway with a fraud canary (90/10, a compared shadow), churn with retries,
// a timeout and a fault drill, and a recommendations ensemble with an SLO; a
// sidecar for fraud with mTLS and authorization; a proxyless gRPC group with
// an API listener; an xDS gRPC server for fraud with mTLS and RBAC.
// Endpoints are on ports from base upwards on 127.0.0.1.
func Sample(base uint32) *model.Mesh {
	m := &model.Mesh{
		Clusters: []model.Cluster{
			grpcCluster("fraud", "v1", base, 2),
			grpcCluster("fraud", "v2", base+2, 1),
			grpcCluster("fraud", "v3", base+3, 1),
			httpCluster("churn", "v1", base+4),
			grpcCluster("recs", "a", base+5, 1),
			grpcCluster("recs", "b", base+6, 1),
			{Name: "otel-collector", Protocol: model.ProtocolGRPC, Localities: []model.Locality{
				{Region: "local", Weight: 1, Endpoints: []model.Endpoint{{Address: "127.0.0.1", Port: 4317}}}}},
		},
		Secrets: []model.Secret{
			{Name: "spiffe://maestro.local/ns/ml/sa/fraud", Certificate: &model.Certificate{
				ChainPEM: []byte("-----BEGIN CERTIFICATE-----\nZnJhdWQ=\n-----END CERTIFICATE-----\n"),
				KeyPEM:   []byte("-----BEGIN EC PRIVATE KEY-----\na2V5\n-----END EC PRIVATE KEY-----\n")}},
			{Name: "trust-bundle", TrustBundle: []byte("-----BEGIN CERTIFICATE-----\ncm9vdA==\n-----END CERTIFICATE-----\n")},
		},
		Tracing: &model.Tracing{Cluster: "otel-collector", ServiceName: "maestro-mesh", SamplePercent: 10},
	}
	m.Normalize() // sorts the clusters so that m.Cluster can find them
	fraud := m.Cluster("fraud.v1")
	fraud.TLS = &model.UpstreamTLS{CertSecret: "spiffe://maestro.local/ns/ml/sa/fraud", TrustSecret: "trust-bundle",
		MatchSANs: []string{"spiffe://maestro.local/ns/ml/sa/fraud"}}
	fraud.HealthCheck = &model.HealthCheck{Interval: 5 * time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 3}
	fraud.Limits = &model.CircuitBreaker{MaxConnections: 100, MaxPendingRequests: 50, MaxRequests: 200, MaxRetries: 3}
	fraud.Outlier = &model.OutlierDetection{Consecutive5xx: 5, Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionPercent: 50}
	churn := m.Cluster("churn.v1")
	churn.HealthCheck = &model.HealthCheck{Interval: 5 * time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 3, Path: "/v2/health/ready"}

	routes := []model.Route{
		{Name: "fraud", Match: grpcModel("fraud"), Action: fraudAction()},
		{Name: "fraud-rest", Match: model.RouteMatch{Prefix: "/v2/models/fraud/"}, Action: fraudRESTAction()},
		{Name: "churn", Match: model.RouteMatch{Prefix: "/v2/models/churn/"}, Action: model.RouteAction{
			Clusters: []model.WeightedCluster{{Name: "churn.v1", Weight: 1}},
			Timeout:  2 * time.Second,
			Retry:    &model.RetryPolicy{Attempts: 2, PerTryTimeout: 500 * time.Millisecond, On: []string{"5xx", "reset"}},
			Fault:    &model.Fault{DelayPercent: 1, Delay: 100 * time.Millisecond, AbortPercent: 0.5, AbortHTTPStatus: 503},
		}},
		{Name: "recs", Match: grpcModel("recs"), Action: model.RouteAction{
			Clusters: []model.WeightedCluster{{Name: "recs.a", Weight: 1}},
			Timeout:  time.Second,
			Fanout: &model.Fanout{
				Members:  []model.FanoutMember{{Cluster: "recs.a", Model: "recs-a", Weight: 2}, {Cluster: "recs.b", Model: "recs-b", Weight: 1}},
				Strategy: "weighted_mean", Quorum: 1, Timeout: 300 * time.Millisecond,
			},
			SLO: &model.SLO{
				Latency:      []model.LatencyTarget{{Percentile: 99, Threshold: 250 * time.Millisecond}},
				ErrorRate:    0.01,
				Availability: 0.999,
				Windows:      []model.BurnWindow{{Duration: 5 * time.Minute, BurnRate: 14.4}, {Duration: time.Hour, BurnRate: 6}},
			},
		}},
	}
	filters := []model.WasmFilter{
		{Name: "gateway-http.fanout", Kind: model.FilterFanout, Code: model.WasmCode{Path: "/etc/maestro/fanout.wasm"}},
		{Name: "gateway-http.slo", Kind: model.FilterSLO, Code: model.WasmCode{Path: "/etc/maestro/slo.wasm"}},
	}
	m.Groups = []model.NodeGroup{
		{Name: GatewayGroup, Nodes: model.NodeSelector{Role: model.RoleGateway},
			ExtraClusters: []string{"recs.b"},
			Listeners: []model.Listener{{
				Name: "gateway-http", Kind: model.ListenerGateway, Address: "0.0.0.0", Port: 8080, Protocol: model.ProtocolGRPC,
				Routes:  model.RouteConfig{Name: "gateway-http", VirtualHosts: []model.VirtualHost{{Name: "models", Domains: []string{"*"}, Routes: routes}}},
				Filters: filters,
			}}},
		{Name: ProxylessGroup, Nodes: model.NodeSelector{Role: model.RoleProxyless},
			Listeners: []model.Listener{{
				Name: "fraud", Kind: model.ListenerAPI, Protocol: model.ProtocolGRPC,
				Routes: model.RouteConfig{Name: "fraud", VirtualHosts: []model.VirtualHost{{Name: "fraud", Domains: []string{"fraud"}, Routes: []model.Route{
					{Name: "fraud", Match: model.RouteMatch{Prefix: "/"}, Action: model.RouteAction{
						Clusters: []model.WeightedCluster{{Name: "fraud.v1", Weight: 90}, {Name: "fraud.v2", Weight: 10}},
						Timeout:  3 * time.Second,
						Retry:    &model.RetryPolicy{Attempts: 1, On: []string{"unavailable"}},
					}}}}}},
			}}},
		{Name: GRPCServerGroup, Nodes: model.NodeSelector{Role: model.RoleProxyless, Service: "fraud"},
			Listeners: []model.Listener{{
				Name: GRPCServerListener, Kind: model.ListenerGRPCServer, Address: "0.0.0.0", Port: 9000, Protocol: model.ProtocolGRPC,
				TLS: &model.DownstreamTLS{CertSecret: "spiffe://maestro.local/ns/ml/sa/fraud", TrustSecret: "trust-bundle", RequireClientCert: true},
				Authorization: &model.Authorization{Action: model.AuthzAllow, Rules: []model.AuthzRule{
					{Name: "gateway-infers", Principals: []string{"spiffe://maestro.local/ns/ml/sa/gateway"}, Paths: []string{inferPath}}}},
				Routes: model.RouteConfig{Name: "fraud-server", VirtualHosts: []model.VirtualHost{{Name: "fraud-server", Domains: []string{"*"},
					Routes: []model.Route{{Name: "serve", Match: model.RouteMatch{Prefix: "/"}}}}}},
			}}},
		{Name: SidecarGroup, Nodes: model.NodeSelector{Role: model.RoleSidecar, Service: "fraud"},
			Listeners: []model.Listener{
				{Name: "fraud-inbound", Kind: model.ListenerInbound, Address: "0.0.0.0", Port: 15006, Protocol: model.ProtocolGRPC,
					TLS: &model.DownstreamTLS{CertSecret: "spiffe://maestro.local/ns/ml/sa/fraud", TrustSecret: "trust-bundle", RequireClientCert: true,
						MatchSANs: []string{"spiffe://maestro.local/ns/ml/sa/gateway"}},
					Authorization: &model.Authorization{Action: model.AuthzAllow, Rules: []model.AuthzRule{
						{Name: "gateway-infers", Principals: []string{"spiffe://maestro.local/ns/ml/sa/gateway"}, Paths: []string{inferPath}},
						{Name: "health", Prefixes: []string{"/v2/health/"}},
					}},
					Routes: model.RouteConfig{Name: "fraud-inbound", VirtualHosts: []model.VirtualHost{{Name: "local", Domains: []string{"*"}, Routes: []model.Route{
						{Name: "local", Match: model.RouteMatch{Prefix: "/"}, Action: model.RouteAction{Clusters: []model.WeightedCluster{{Name: "fraud.v1", Weight: 1}}}}}}}},
				},
				{Name: "fraud-outbound", Kind: model.ListenerOutbound, Address: "127.0.0.1", Port: 15001, Protocol: model.ProtocolHTTP,
					Routes: model.RouteConfig{Name: "fraud-outbound", VirtualHosts: []model.VirtualHost{{Name: "churn", Domains: []string{"churn"}, Routes: []model.Route{
						{Name: "churn", Match: model.RouteMatch{Prefix: "/"}, Action: model.RouteAction{Clusters: []model.WeightedCluster{{Name: "churn.v1", Weight: 1}}}}}}}},
				},
			}},
	}
	m.Normalize()
	return m
}

func fraudAction() model.RouteAction {
	return model.RouteAction{
		Clusters: []model.WeightedCluster{{Name: "fraud.v1", Weight: 90}, {Name: "fraud.v2", Weight: 10}},
		Mirrors:  []model.Mirror{{Cluster: "fraud.v3", Percent: 5, Compare: true, Model: "fraud-shadow"}},
		Timeout:  3 * time.Second,
		Retry:    &model.RetryPolicy{Attempts: 2, On: []string{"unavailable", "reset"}},
	}
}

// fraudRESTAction mirrors without comparing, through Envoy's mirror policy.
func fraudRESTAction() model.RouteAction {
	a := fraudAction()
	a.Mirrors = []model.Mirror{{Cluster: "fraud.v3", Percent: 12.5, RuntimeKey: "maestro.fraud.shadow"}}
	return a
}

func grpcModel(name string) model.RouteMatch {
	return model.RouteMatch{Path: inferPath, GRPC: true, Headers: []model.HeaderMatch{{Name: ModelHeader, Exact: name}}}
}

func grpcCluster(service, version string, port uint32, n int) model.Cluster {
	c := model.Cluster{Name: service + "." + version, Service: service, Version: version, Protocol: model.ProtocolGRPC,
		Identity: "spiffe://maestro.local/ns/ml/sa/" + service}
	loc := model.Locality{Region: "local", Zone: "a", Weight: 1}
	for i := 0; i < n; i++ {
		loc.Endpoints = append(loc.Endpoints, model.Endpoint{Address: "127.0.0.1", Port: port + uint32(i)})
	}
	c.Localities = []model.Locality{loc}
	return c
}

func httpCluster(service, version string, port uint32) model.Cluster {
	c := grpcCluster(service, version, port, 1)
	c.Protocol = model.ProtocolHTTP
	return c
}

// Large returns a normalized mesh with routes routes on one gateway listener
// and versions clusters (two per route when versions == 2*routes), each with
// two endpoints, split 90/10 between consecutive versions. It is the
// benchmark mesh for "10,000 routes and 20,000 service versions".
func Large(routes, versions int) *model.Mesh {
	m := &model.Mesh{}
	m.Clusters = make([]model.Cluster, 0, versions)
	for i := 0; i < versions; i++ {
		c := model.Cluster{Name: fmt.Sprintf("svc%05d.v%d", i/2, i%2), Service: fmt.Sprintf("svc%05d", i/2), Version: fmt.Sprintf("v%d", i%2),
			Protocol: model.ProtocolGRPC, Localities: []model.Locality{{Region: "r", Zone: "z", Weight: 1, Endpoints: []model.Endpoint{
				{Address: fmt.Sprintf("10.%d.%d.1", i/256%256, i%256), Port: 9000},
				{Address: fmt.Sprintf("10.%d.%d.2", i/256%256, i%256), Port: 9000},
			}}},
			Outlier: &model.OutlierDetection{Consecutive5xx: 5}}
		m.Clusters = append(m.Clusters, c)
	}
	rs := make([]model.Route, 0, routes)
	for i := 0; i < routes; i++ {
		a, b := (2*i)%versions, (2*i+1)%versions
		rs = append(rs, model.Route{Name: fmt.Sprintf("model%05d", i), Match: grpcModel(fmt.Sprintf("model%05d", i)), Action: model.RouteAction{
			Clusters: []model.WeightedCluster{{Name: m.Clusters[a].Name, Weight: 90}, {Name: m.Clusters[b].Name, Weight: 10}},
			Timeout:  time.Second,
		}})
	}
	m.Groups = []model.NodeGroup{{Name: GatewayGroup, Nodes: model.NodeSelector{Role: model.RoleGateway},
		Listeners: []model.Listener{{Name: "gateway-http", Kind: model.ListenerGateway, Address: "0.0.0.0", Port: 8080, Protocol: model.ProtocolGRPC,
			Routes: model.RouteConfig{Name: "gateway-http", VirtualHosts: []model.VirtualHost{{Name: "models", Domains: []string{"*"}, Routes: rs}}}}}}}
	m.Normalize()
	return m
}
