// Package model is the control plane's intermediate representation (IR): a
// resolved, sorted, plain-Go description of what every group of nodes must
// do. It sits between the user-facing policy (controlplane/policy) and the
// Envoy resources (controlplane/xds); it holds no protobuf and does no I/O.
//
// Conventions the builders rely on:
//   - every slice whose elements have a Name is sorted by Name, except the
//     routes of a virtual host, whose order is the match order (first match
//     wins) and is kept as given;
//   - names are unique within their kind; references (a route's clusters, a
//     listener's secrets, a filter's ECDS name) point at objects of the same
//     Mesh, which Validate checks;
//   - percentages are float64 in [0, 100]; durations are time.Duration and 0
//     means "not set" (the xds builders then leave Envoy's default).
//
// Mesh.Normalize sorts a freshly built Mesh; Mesh.Hash and Mesh.Equal compare
// contents so that an unchanged mesh causes no push.
package model

import (
	"net/netip"
	"time"
)

// Mesh is the whole resolved mesh: the node groups and the shared objects
// (clusters, secrets, wasm filter code) their listeners refer to.
type Mesh struct {
	// Groups are the node groups, sorted by Name. Each gets one snapshot.
	Groups []NodeGroup `json:"groups,omitempty"`
	// Clusters holds one cluster per service version (plus auxiliary ones
	// such as a tracing collector), sorted by Name, endpoints included.
	Clusters []Cluster `json:"clusters,omitempty"`
	// Secrets are TLS certificates and trust bundles by SDS name, sorted.
	Secrets []Secret `json:"secrets,omitempty"`
	// Tracing, when set, makes every HTTP connection manager emit spans.
	Tracing *Tracing `json:"tracing,omitempty"`

	// validated is set by Build once the mesh passed Validate, so the
	// translator does not walk a 10,000-route mesh a second time per
	// change (a built Mesh must not be modified).
	validated bool
}

// Role is the kind of node a group is for.
type Role string

// Node roles.
const (
	// RoleGateway is an Envoy at the edge of the mesh.
	RoleGateway Role = "gateway"
	// RoleSidecar is an Envoy beside one service's instances.
	RoleSidecar Role = "sidecar"
	// RoleProxyless is a gRPC client using the xds resolver, without Envoy.
	RoleProxyless Role = "proxyless"
)

// NodeGroup is a set of nodes that receive the same resources: one snapshot.
// The group's clusters, endpoints, secrets and filter configs are those its
// listeners reference (the xds package computes that closure).
type NodeGroup struct {
	// Name identifies the group; it is the snapshot cache key.
	Name string `json:"name"`
	// Nodes says which nodes belong to the group.
	Nodes NodeSelector `json:"nodes"`
	// Listeners are sorted by Name.
	Listeners []Listener `json:"listeners,omitempty"`
	// ExtraClusters names clusters the group must receive even though no
	// route uses them (e.g. fanout members reached by callouts only),
	// sorted.
	ExtraClusters []string `json:"extraClusters,omitempty"`
}

// NodeSelector matches nodes by exact ID or by role and service.
// Mesh.GroupFor gives exact IDs precedence over role/service matches, and a
// role+service match precedence over a role-only match (empty Service).
type NodeSelector struct {
	// IDs are exact node IDs, sorted.
	IDs []string `json:"ids,omitempty"`
	// Role is the role nodes announce; empty matches none by role.
	Role Role `json:"role,omitempty"`
	// Service is the service a sidecar fronts; empty matches any.
	Service string `json:"service,omitempty"`
}

// NodeInfo is what the server knows of a connecting node, taken from the
// xDS Node (ID, and the metadata keys MetadataRole and MetadataService).
type NodeInfo struct {
	ID      string
	Role    Role
	Service string
}

// Node metadata keys the bootstrap writes and the server reads.
const (
	MetadataRole    = "maestro.role"
	MetadataService = "maestro.service"
)

// ListenerKind says how a listener is used, which decides its xDS shape.
type ListenerKind string

// Listener kinds.
const (
	// ListenerGateway accepts traffic from outside the mesh on Port.
	ListenerGateway ListenerKind = "gateway"
	// ListenerInbound receives mesh traffic for the sidecar's own service,
	// usually with downstream mTLS and authorization.
	ListenerInbound ListenerKind = "inbound"
	// ListenerOutbound is where the local application sends requests to
	// other services; it routes them to clusters.
	ListenerOutbound ListenerKind = "outbound"
	// ListenerAPI is a proxyless gRPC API listener: Name is the xds:///
	// target, the route configuration is inline, no address.
	ListenerAPI ListenerKind = "api"
	// ListenerGRPCServer is the listener of an xDS-enabled gRPC server
	// (google.golang.org/grpc/xds.NewGRPCServer): Name is the resource name
	// its bootstrap's server_listener_resource_name_template gives (gRPC's
	// default is "grpc/server?xds.resource.listening_address=<host>:<port>"),
	// Address and Port are what it serves on. Requests are served locally
	// (routes need no clusters); TLS comes from gRPC certificate providers
	// and cannot match SANs (use Authorization); Authorization becomes
	// gRPC's RBAC filter.
	ListenerGRPCServer ListenerKind = "grpc-server"
)

// Protocol is the application protocol spoken on a listener or to a cluster.
type Protocol string

// Protocols.
const (
	// ProtocolGRPC is gRPC: HTTP/2 both ways.
	ProtocolGRPC Protocol = "grpc"
	// ProtocolHTTP is HTTP/1.1 (REST/JSON); listeners accept HTTP/2 too.
	ProtocolHTTP Protocol = "http"
)

// Listener is one Envoy listener (or gRPC API listener) with one HTTP
// connection manager.
type Listener struct {
	// Name is the listener's xDS name; for ListenerAPI, the xds:/// target.
	Name string       `json:"name"`
	Kind ListenerKind `json:"kind"`
	// Address and Port to bind; unused for ListenerAPI.
	Address string `json:"address,omitempty"`
	Port    uint32 `json:"port,omitempty"`
	// Protocol decides the codec; ProtocolGRPC forces HTTP/2.
	Protocol Protocol `json:"protocol"`
	// TLS, when set, terminates (m)TLS with certificates from SDS.
	TLS *DownstreamTLS `json:"tls,omitempty"`
	// Routes is the route configuration: served over RDS under its Name,
	// or inline for ListenerAPI.
	Routes RouteConfig `json:"routes"`
	// Authorization, when set, adds an RBAC filter before the router. Not
	// for ListenerAPI: gRPC enforces RBAC on servers (ListenerGRPCServer)
	// only.
	Authorization *Authorization `json:"authorization,omitempty"`
	// Filters are the wasm filters in chain order, before the router.
	// Each is delivered over ECDS; its configuration is gathered from the
	// routes' Fanout and SLO settings, and for fanout from the routes that
	// select a model over gRPC (OIPModelMethodPrefix). Envoy listeners only.
	Filters []WasmFilter `json:"filters,omitempty"`
}

// RouteConfig is an Envoy RouteConfiguration.
type RouteConfig struct {
	// Name is the RDS name; unique across the group.
	Name string `json:"name"`
	// VirtualHosts are sorted by Name.
	VirtualHosts []VirtualHost `json:"virtualHosts,omitempty"`
}

// VirtualHost groups routes by the request's :authority.
type VirtualHost struct {
	Name string `json:"name"`
	// Domains are sorted; "*" matches any host.
	Domains []string `json:"domains"`
	// Routes in match order (first match wins): not sorted.
	Routes []Route `json:"routes,omitempty"`
}

// Route is one match and what to do with matching requests.
type Route struct {
	// Name is unique within the route configuration; filters key their
	// per-route settings by it.
	Name   string      `json:"name"`
	Match  RouteMatch  `json:"match"`
	Action RouteAction `json:"action"`
}

// RouteMatch matches requests. Exactly one of Path, Prefix and
// SeparatedPrefix is set (Prefix "/" matches everything); all Headers must
// match too.
type RouteMatch struct {
	// Path is an exact path, e.g. "/v2/health/ready".
	Path string `json:"path,omitempty"`
	// Prefix is a path prefix, e.g. "/inference.GRPCInferenceService/Model".
	Prefix string `json:"prefix,omitempty"`
	// SeparatedPrefix matches the path itself or the path followed by "/"
	// and anything (Envoy's path_separated_prefix), e.g. "/v2/models/fraud"
	// matches a model's REST metadata, ready, infer and versions paths but
	// not "/v2/models/fraud-ensemble".
	SeparatedPrefix string `json:"separatedPrefix,omitempty"`
	// Headers are all required to match, in the given order.
	Headers []HeaderMatch `json:"headers,omitempty"`
	// GRPC restricts the match to gRPC requests (content-type application/grpc).
	GRPC bool `json:"grpc,omitempty"`
}

// HeaderMatch matches one request header. Exactly one of Exact, Prefix,
// Regex (RE2) and Present is set.
type HeaderMatch struct {
	Name    string `json:"name"`
	Exact   string `json:"exact,omitempty"`
	Prefix  string `json:"prefix,omitempty"`
	Regex   string `json:"regex,omitempty"`
	Present bool   `json:"present,omitempty"`
	// Invert negates the match.
	Invert bool `json:"invert,omitempty"`
}

// RouteAction says where a matched request goes and how.
type RouteAction struct {
	// Clusters are the weighted destinations, sorted by Name; one entry is
	// a plain cluster route. Weights are relative (need not sum to 100).
	Clusters []WeightedCluster `json:"clusters"`
	// Mirrors copy a share of requests to other clusters (shadows), sorted
	// by Cluster. Responses from mirrors are discarded.
	Mirrors []Mirror `json:"mirrors,omitempty"`
	// Timeout is the whole-request timeout; 0 leaves Envoy's default.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Retry, when set, retries failed requests.
	Retry *RetryPolicy `json:"retry,omitempty"`
	// Fault, when set, injects delays or aborts (drills).
	Fault *Fault `json:"fault,omitempty"`
	// Fanout, when set, is this route's ensemble/shadow-compare config for
	// the fanout wasm filter.
	Fanout *Fanout `json:"fanout,omitempty"`
	// SLO, when set, is this route's config for the slo wasm filter.
	SLO *SLO `json:"slo,omitempty"`
}

// EachCluster calls f with every cluster a sends requests to: the weighted
// clusters, the mirrors and the fan-out members, in that order.
func (a *RouteAction) EachCluster(f func(name string)) {
	for _, w := range a.Clusters {
		f(w.Name)
	}
	for _, m := range a.Mirrors {
		f(m.Cluster)
	}
	if a.Fanout != nil {
		for _, m := range a.Fanout.Members {
			f(m.Cluster)
		}
		if o := a.Fanout.Observe; o != nil {
			f(o.Cluster)
		}
	}
}

// WeightedCluster is one destination of a split.
type WeightedCluster struct {
	// Name is a Cluster's name in the Mesh.
	Name   string `json:"name"`
	Weight uint32 `json:"weight"`
}

// Mirror sends a copy of Percent of the requests to Cluster.
type Mirror struct {
	Cluster string  `json:"cluster"`
	Percent float64 `json:"percent"`
	// RuntimeKey lets operators change the fraction at runtime; optional.
	RuntimeKey string `json:"runtimeKey,omitempty"`
	// Compare hands the shadow to the fanout filter instead of Envoy's
	// mirror policy: the filter sends the copy itself and compares the
	// shadow's outputs with the primary's.
	Compare bool `json:"compare,omitempty"`
	// Model is the model name to ask the shadow for (Compare only); empty
	// keeps the request's.
	Model string `json:"model,omitempty"`
}

// RetryPolicy retries a failed request.
type RetryPolicy struct {
	// Attempts is the number of retries (not counting the first try).
	Attempts uint32 `json:"attempts"`
	// PerTryTimeout bounds each try; 0 leaves the route timeout.
	PerTryTimeout time.Duration `json:"perTryTimeout,omitempty"`
	// On lists Envoy retry conditions ("5xx", "reset", "unavailable", ...),
	// sorted.
	On []string `json:"on,omitempty"`
}

// Fault injects failures for drills. A zero percentage disables that part.
type Fault struct {
	DelayPercent float64       `json:"delayPercent,omitempty"`
	Delay        time.Duration `json:"delay,omitempty"`
	AbortPercent float64       `json:"abortPercent,omitempty"`
	// AbortHTTPStatus or AbortGRPCStatus (one of them) is returned on abort.
	AbortHTTPStatus uint32 `json:"abortHttpStatus,omitempty"`
	AbortGRPCStatus uint32 `json:"abortGrpcStatus,omitempty"`
}

// Fanout is the fanout filter's per-route config: an ensemble of members
// called concurrently, or a sequence. (Shadow comparisons come from the
// route's Mirrors with Compare set.)
type Fanout struct {
	// Members are called for every request, sorted by Cluster.
	Members []FanoutMember `json:"members,omitempty"`
	// Strategy combines outputs: one of filterconfig.Strategies(), passed
	// through as the policy gave it (internal/archtest ties the lists).
	Strategy string `json:"strategy,omitempty"`
	// Quorum is the minimum number of answers; 0 means all members.
	Quorum uint32 `json:"quorum,omitempty"`
	// Timeout bounds the callouts.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Stacking is the logistic meta-model for Strategy "stacking".
	Stacking *Stacking `json:"stacking,omitempty"`
	// Sequence feeds each member's outputs into the next, in Members order
	// as given (then Members is not sorted).
	Sequence bool `json:"sequence,omitempty"`
	// Observe, when set, makes the filter post the members' answers to
	// the control plane (adaptive ensembles; BuildOptions.Observer).
	Observe *FanoutObserve `json:"observe,omitempty"`
}

// FanoutObserve is where and how often the fanout filter posts what an
// adaptive ensemble's members answered.
type FanoutObserve struct {
	// Cluster is a Cluster's name in the Mesh: ObserverCluster.
	Cluster string `json:"cluster"`
	// Route is the policy route the control plane's tuner knows the
	// ensemble by.
	Route string `json:"route"`
	// Percent of the route's requests observed, in (0, 100].
	Percent float64 `json:"percent"`
}

// FanoutMember is one model called by the fanout filter.
type FanoutMember struct {
	// Cluster is a Cluster's name in the Mesh.
	Cluster string `json:"cluster"`
	// Model is the model name to ask the member for.
	Model  string  `json:"model"`
	Weight float64 `json:"weight,omitempty"`
	// Name is the member's name in observations (MemberName); set on
	// observed fanouts only.
	Name string `json:"name,omitempty"`
}

// Stacking is a logistic meta-model over the members' scores: one weight
// per member in Members order, plus a bias.
type Stacking struct {
	Weights []float64 `json:"weights"`
	Bias    float64   `json:"bias"`
}

// SLO is the slo filter's per-route config.
type SLO struct {
	// Latency targets, sorted by Percentile.
	Latency []LatencyTarget `json:"latency,omitempty"`
	// ErrorRate is the highest allowed share of errors, in [0, 1].
	ErrorRate float64 `json:"errorRate,omitempty"`
	// Availability is the target share of good requests, in [0, 1].
	Availability float64 `json:"availability,omitempty"`
	// Windows are the burn-rate windows, sorted by Duration.
	Windows []BurnWindow `json:"windows,omitempty"`
	// BudgetHeader adds the remaining error budget to responses.
	BudgetHeader bool `json:"budgetHeader,omitempty"`
}

// LatencyTarget says Percentile of requests finish within Threshold.
type LatencyTarget struct {
	Percentile float64       `json:"percentile"`
	Threshold  time.Duration `json:"threshold"`
}

// BurnWindow is a rolling window with the burn rate that triggers a report.
type BurnWindow struct {
	Duration time.Duration `json:"duration"`
	BurnRate float64       `json:"burnRate"`
}

// FilterKind names a Maestro wasm filter.
type FilterKind string

// Wasm filters.
const (
	FilterFanout FilterKind = "fanout"
	FilterSLO    FilterKind = "slo"
)

// WasmFilter places one wasm filter in a listener's chain. Its ECDS
// resource is named Name and carries the filter's plugin configuration.
type WasmFilter struct {
	// Name is the ECDS resource name, unique in the group.
	Name string     `json:"name"`
	Kind FilterKind `json:"kind"`
	Code WasmCode   `json:"code"`
}

// WasmCode is where Envoy loads a filter's .wasm from: a local file, or a
// remote URL fetched through a cluster and checked against SHA256.
type WasmCode struct {
	Path string `json:"path,omitempty"`
	URL  string `json:"url,omitempty"`
	// Cluster serves URL.
	Cluster string `json:"cluster,omitempty"`
	// SHA256 is the hex digest of the remote module.
	SHA256 string `json:"sha256,omitempty"`
}

// DownstreamTLS terminates TLS on a listener.
type DownstreamTLS struct {
	// CertSecret is the SDS name of the listener's certificate.
	CertSecret string `json:"certSecret"`
	// TrustSecret is the SDS name of the bundle that verifies clients;
	// set for mTLS.
	TrustSecret string `json:"trustSecret,omitempty"`
	// RequireClientCert rejects clients without a certificate (STRICT mTLS).
	RequireClientCert bool `json:"requireClientCert,omitempty"`
	// MatchSANs are the client URI SANs (SPIFFE IDs) accepted, sorted;
	// empty accepts any certificate the bundle verifies.
	MatchSANs []string `json:"matchSans,omitempty"`
}

// UpstreamTLS originates TLS to a cluster's endpoints.
type UpstreamTLS struct {
	// CertSecret is the SDS name of the client certificate (mTLS).
	CertSecret string `json:"certSecret,omitempty"`
	// TrustSecret is the SDS name of the bundle that verifies the server.
	TrustSecret string `json:"trustSecret"`
	// SNI is sent in the ClientHello; optional.
	SNI string `json:"sni,omitempty"`
	// MatchSANs are the server URI SANs (SPIFFE IDs) accepted, sorted.
	MatchSANs []string `json:"matchSans,omitempty"`
}

// Authorization is the RBAC policy of an inbound listener: a request is
// allowed if any rule matches it (Action allow) or denied if any does
// (Action deny).
type Authorization struct {
	Action AuthzAction `json:"action"`
	// Rules are sorted by Name.
	Rules []AuthzRule `json:"rules,omitempty"`
}

// AuthzAction is what a matching rule does.
type AuthzAction string

// Authorization actions.
const (
	AuthzAllow AuthzAction = "allow"
	AuthzDeny  AuthzAction = "deny"
)

// AuthzRule matches callers (Principals) and requests (Paths/Prefixes/Headers).
// Empty lists match anything.
type AuthzRule struct {
	Name string `json:"name"`
	// Principals are SPIFFE IDs of the peer certificate, sorted; "*" is any
	// authenticated peer.
	Principals []string `json:"principals,omitempty"`
	// Paths are exact request paths, sorted.
	Paths []string `json:"paths,omitempty"`
	// Prefixes are request path prefixes, sorted.
	Prefixes []string `json:"prefixes,omitempty"`
	// Headers must all match.
	Headers []HeaderMatch `json:"headers,omitempty"`
}

// Cluster is one upstream: a service version, reached over EDS.
type Cluster struct {
	// Name is unique, conventionally "<service>.<version>".
	Name    string `json:"name"`
	Service string `json:"service,omitempty"`
	Version string `json:"version,omitempty"`
	// Protocol decides HTTP/2 (gRPC) or HTTP/1.1 upstream.
	Protocol Protocol `json:"protocol"`
	// ConnectTimeout; 0 means the builders' default.
	ConnectTimeout time.Duration `json:"connectTimeout,omitempty"`
	// Identity is the service's SPIFFE ID (what its certificate proves).
	Identity string `json:"identity,omitempty"`
	// TLS, when set, originates (m)TLS with certificates from SDS.
	TLS *UpstreamTLS `json:"tls,omitempty"`
	// HealthCheck, when set, probes the endpoints actively.
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`
	// Limits, when set, are the circuit-breaker thresholds.
	Limits *CircuitBreaker `json:"limits,omitempty"`
	// Outlier, when set, ejects misbehaving endpoints.
	Outlier *OutlierDetection `json:"outlier,omitempty"`
	// Localities are the endpoints (the EDS resource named Name, or the
	// cluster's inline load assignment when any address is a host name),
	// sorted by Region, Zone, SubZone.
	Localities []Locality `json:"localities,omitempty"`
}

// HealthCheck probes endpoints with gRPC health checking (for gRPC
// clusters) or an HTTP GET of Path.
type HealthCheck struct {
	Interval           time.Duration `json:"interval"`
	Timeout            time.Duration `json:"timeout"`
	HealthyThreshold   uint32        `json:"healthyThreshold"`
	UnhealthyThreshold uint32        `json:"unhealthyThreshold"`
	// Path is the HTTP path (HTTP clusters), e.g. "/v2/health/ready".
	Path string `json:"path,omitempty"`
	// GRPCService is the service name for grpc.health.v1 (gRPC clusters).
	GRPCService string `json:"grpcService,omitempty"`
}

// CircuitBreaker holds per-cluster connection and request limits; zero
// fields leave Envoy's defaults.
type CircuitBreaker struct {
	MaxConnections     uint32 `json:"maxConnections,omitempty"`
	MaxPendingRequests uint32 `json:"maxPendingRequests,omitempty"`
	MaxRequests        uint32 `json:"maxRequests,omitempty"`
	MaxRetries         uint32 `json:"maxRetries,omitempty"`
}

// OutlierDetection ejects endpoints that fail repeatedly; zero fields leave
// Envoy's defaults.
type OutlierDetection struct {
	Consecutive5xx     uint32        `json:"consecutive5xx,omitempty"`
	Interval           time.Duration `json:"interval,omitempty"`
	BaseEjectionTime   time.Duration `json:"baseEjectionTime,omitempty"`
	MaxEjectionPercent uint32        `json:"maxEjectionPercent,omitempty"`
}

// Locality is a set of endpoints in one place. Proxyless gRPC rejects EDS
// without a locality and a weight, so Weight 0 is sent as 1.
type Locality struct {
	Region  string `json:"region,omitempty"`
	Zone    string `json:"zone,omitempty"`
	SubZone string `json:"subZone,omitempty"`
	Weight  uint32 `json:"weight,omitempty"`
	// Priority 0 is the highest.
	Priority uint32 `json:"priority,omitempty"`
	// Endpoints are sorted by Address then Port.
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one instance.
type Endpoint struct {
	// Address is an IP or a host name.
	Address string `json:"address"`
	Port    uint32 `json:"port"`
	// Weight is the load-balancing weight within the locality; 0 means 1.
	Weight uint32 `json:"weight,omitempty"`
}

// IsHostName reports whether Address is a host name rather than an IP
// literal: Envoy rejects host names in EDS, so a cluster with one is
// resolved by the client itself (a DNS cluster) instead. An empty address
// is neither, and is left to the EDS resource's validation to report.
func (e Endpoint) IsHostName() bool {
	if e.Address == "" {
		return false
	}
	_, err := netip.ParseAddr(e.Address)
	return err != nil
}

// HasHostNames reports whether any endpoint of c is a host name.
func (c *Cluster) HasHostNames() bool {
	for i := range c.Localities {
		for _, e := range c.Localities[i].Endpoints {
			if e.IsHostName() {
				return true
			}
		}
	}
	return false
}

// EndpointCount is the number of endpoints of c over all localities.
func (c *Cluster) EndpointCount() int {
	n := 0
	for i := range c.Localities {
		n += len(c.Localities[i].Endpoints)
	}
	return n
}

// Secret is TLS material delivered over SDS. Exactly one of Certificate
// and TrustBundle is set. Never log a Secret.
type Secret struct {
	// Name is the SDS name, e.g. "spiffe://maestro.local/ns/ml/sa/fraud".
	Name string `json:"name"`
	// Certificate is a leaf with its chain and key.
	Certificate *Certificate `json:"certificate,omitempty"`
	// TrustBundle is the PEM of the CA certificates peers are verified with.
	TrustBundle []byte `json:"trustBundle,omitempty"`
}

// Certificate is PEM-encoded TLS material.
type Certificate struct {
	// ChainPEM is the leaf followed by intermediates.
	ChainPEM []byte `json:"chainPem"`
	KeyPEM   []byte `json:"keyPem"`
}

// Tracing sends spans over OTLP/gRPC to a collector cluster.
type Tracing struct {
	// Cluster is a Cluster's name in the Mesh: the OTLP collector.
	Cluster string `json:"cluster"`
	// ServiceName is the resource's service.name; empty uses the node ID.
	ServiceName string `json:"serviceName,omitempty"`
	// SamplePercent is the share of requests traced, in [0, 100].
	SamplePercent float64 `json:"samplePercent"`
}
