// Package xdsconfig turns the xDS resources a gateway node receives (LDS,
// RDS, CDS, EDS, ECDS) into plain Go values the data plane runs on. It
// accepts exactly the fields the gateway implements and refuses any other
// populated field by its path, so that a NACK names what is missing instead
// of the gateway silently behaving unlike Envoy.
package xdsconfig

import (
	"regexp"
	"time"
)

// Codec is the downstream protocol a listener accepts.
type Codec int

// Codecs, as HttpConnectionManager.CodecType.
const (
	CodecAuto Codec = iota
	CodecHTTP1
	CodecHTTP2
)

// Listener is one LDS listener with its HTTP connection manager.
type Listener struct {
	Name        string
	Address     string // host:port
	StatPrefix  string
	Codec       Codec
	RouteConfig string // RDS name
	// Filters are the HTTP filters before the router, in order.
	Filters []HTTPFilter
	Tracing *Tracing
}

// FilterKind says what implements an HTTP filter.
type FilterKind int

// Filter kinds.
const (
	FilterWasm  FilterKind = iota + 1 // config from ECDS under the filter's name
	FilterFault                       // envoy.filters.http.fault
)

// HTTPFilter is one HTTP filter of a listener.
type HTTPFilter struct {
	Name  string
	Kind  FilterKind
	Fault *Fault // FilterFault: the listener-level config (may be empty)
}

// Tracing is the HCM's tracing: sampled share and the OpenTelemetry
// collector cluster spans go to.
type Tracing struct {
	SamplePercent float64
	Cluster       string
	ServiceName   string
}

// Fault is an HTTPFault config: a delay and an abort, each with the share
// of requests (per million) it applies to.
type Fault struct {
	Delay       time.Duration
	DelayPerMil uint32 // parts per million
	AbortHTTP   int    // HTTP status, or 0
	AbortGRPC   int    // gRPC status, or -1
	AbortPerMil uint32
	HasDelay    bool
	HasAbort    bool
}

// RouteConfig is one RDS route table.
type RouteConfig struct {
	Name         string
	VirtualHosts []VirtualHost
}

// VirtualHost is a set of routes for some domains.
type VirtualHost struct {
	Name    string
	Domains []string
	Routes  []Route
}

// Route is one route: a match and where it sends the request.
type Route struct {
	Name   string
	Match  Match
	Action Action
	// Faults overrides, per filter name, the fault filter's config.
	Faults map[string]*Fault
	// Disabled names the HTTP filters this route disables
	// (typed_per_filter_config[name] = FilterConfig{disabled: true}):
	// a stream whose first route resolution picks this route is built
	// without them, as Envoy builds its filter chain (see router.Handler).
	Disabled map[string]bool
}

// Match selects requests by path and headers.
type Match struct {
	Path   string
	Prefix string
	// SeparatedPrefix is path_separated_prefix: the path equals it or
	// continues with "/" after it.
	SeparatedPrefix string
	Regex           *regexp.Regexp // safe_regex on the path
	Headers         []HeaderMatch
	GRPC            bool // content-type application/grpc*
}

// HeaderMatch is a HeaderMatcher.
type HeaderMatch struct {
	Name    string // lower case
	Present *bool
	String  *StringMatch
	Invert  bool
}

// StringMatch is a StringMatcher; exactly one of the forms is set.
type StringMatch struct {
	Exact, Prefix, Suffix, Contains *string
	Regex                           *regexp.Regexp
	IgnoreCase                      bool
}

// Action is a RouteAction.
type Action struct {
	// Clusters are the weighted targets; a single cluster has weight 1.
	Clusters []WeightedCluster
	// Timeout is the whole request's timeout; 0 means none.
	Timeout time.Duration
	Retry   *Retry
	Mirrors []Mirror
}

// WeightedCluster is one target of a split.
type WeightedCluster struct {
	Name   string
	Weight uint32
}

// Retry is a RetryPolicy.
type Retry struct {
	On            RetryOn
	NumRetries    int
	PerTryTimeout time.Duration // 0: the route's timeout bounds each try
}

// RetryOn is the set of retry_on conditions.
type RetryOn struct {
	FiveXX, GatewayError, ConnectFailure, Reset, RefusedStream, Retriable4xx bool
	// GRPC are the gRPC status codes (from grpc-status) that retry.
	GRPC map[int]bool
}

// Mirror is a RequestMirrorPolicy: a copy of PerMillion requests goes to
// Cluster, its answer dropped.
type Mirror struct {
	Cluster    string
	PerMillion uint32
}

// ClusterKind is the cluster's discovery type.
type ClusterKind int

// Cluster kinds.
const (
	ClusterEDS ClusterKind = iota
	ClusterStatic
	ClusterStrictDNS
)

// Cluster is one CDS cluster.
type Cluster struct {
	Name           string
	Kind           ClusterKind
	EDSName        string // the EDS resource name (service_name or Name)
	ConnectTimeout time.Duration
	HTTP2          bool
	HealthCheck    *HealthCheck
	Limits         Limits
	Outlier        *Outlier
	// Endpoints are the load assignment of STATIC and STRICT_DNS clusters.
	Endpoints []Endpoint
	// IPv4First is dns_lookup_family V4_PREFERRED or V4_ONLY.
	IPv4First, IPv4Only bool
	// TLS, if set, makes connections to the hosts mTLS.
	TLS *UpstreamTLS
}

// UpstreamTLS is an UpstreamTlsContext whose certificate and trust bundle
// come from SDS secrets.
type UpstreamTLS struct {
	CertSecret string // SDS name of the client certificate
	CASecret   string // SDS name of the trust bundle
	// URISANs are exact URI SANs the server must present one of; empty
	// accepts any certificate the bundle verifies.
	URISANs []string
}

// Secret is one SDS secret: a certificate with its key, or a trust bundle.
type Secret struct {
	Name           string
	CertChain, Key []byte
	TrustedCA      []byte
}

// HealthCheck is an active health check.
type HealthCheck struct {
	Timeout, Interval  time.Duration
	UnhealthyThreshold int
	HealthyThreshold   int
	GRPC               bool
	GRPCService        string
	HTTPPath           string
}

// Limits are the default-priority circuit breaker thresholds.
type Limits struct {
	MaxConnections, MaxPendingRequests, MaxRequests, MaxRetries int
}

// DefaultLimits are Envoy's thresholds when a cluster sets none.
var DefaultLimits = Limits{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1024, MaxRetries: 3}

// Outlier is consecutive-5xx outlier detection.
type Outlier struct {
	Consecutive5xx     int
	Interval           time.Duration
	BaseEjectionTime   time.Duration
	MaxEjectionPercent int
}

// Endpoint is one upstream host.
type Endpoint struct {
	Host   string
	Port   int
	Weight uint32
}

// Endpoints is one EDS resource.
type Endpoints struct {
	Cluster string
	Hosts   []Endpoint
}

// WasmFilter is one ECDS Wasm filter config.
type WasmFilter struct {
	Name          string // the ECDS resource name
	PluginName    string
	RootID        string
	VMID          string
	Runtime       string
	Configuration []byte
	FailOpen      bool
	// AllowOnHeadersStopIteration lets a pause from request headers be a
	// plain StopIteration instead of StopAllIterationAndBuffer.
	AllowOnHeadersStopIteration bool
	// LocalFile or Remote names the module.
	LocalFile string
	Remote    *RemoteCode
}

// RemoteCode is a module fetched through a cluster and checked by digest.
type RemoteCode struct {
	URI     string
	Cluster string
	Timeout time.Duration
	SHA256  string
}
