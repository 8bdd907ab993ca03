// Package policy is the user-facing mesh policy: YAML documents in the
// Kubernetes style (apiVersion, kind, metadata, spec) that describe services,
// routes, gateways, sidecars, authorization and mesh-wide settings. Load
// parses them strictly (unknown fields are errors), applies defaults in one
// place, and validates them, reporting every problem with file:line:col and
// a field path. Nothing downstream re-validates user input. A Loader does
// the same but keeps decoded documents between calls, so a process that
// reloads on every change re-parses only the documents that changed.
//
// The Go types here are the schema: docs/policy.schema.json is generated from
// them (see Schema), so the two cannot drift. Field names follow the `yaml`
// tags; a `doc` tag is the field's one-line description.
package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// APIVersion is the only apiVersion this package reads.
const APIVersion = "maestro.dev/v1alpha1"

// The kinds of document.
const (
	KindMesh          = "Mesh"
	KindService       = "Service"
	KindRoute         = "Route"
	KindGateway       = "Gateway"
	KindSidecar       = "Sidecar"
	KindAuthorization = "AuthorizationPolicy"
	// KindEndpoints is an endpoints file: it is read only when a Service
	// version names it in endpointsFile, and skipped in directories.
	KindEndpoints = "Endpoints"
)

// Mesh is every policy document merged: at most one MeshConfig and any
// number of the other kinds, each slice sorted by name.
//
// A Mesh is read-only for its users: the Meshes a Loader returns share
// documents' contents (slices, maps, pointed-to structs) with each other
// and with the Loader's cache, so a write into one could show in another.
type Mesh struct {
	// Config holds the mesh-wide settings; it is defaulted when no Mesh
	// document was given, so it is never nil after Load.
	Config         *MeshConfig
	Services       []*Service
	Routes         []*Route
	Gateways       []*Gateway
	Sidecars       []*Sidecar
	Authorizations []*AuthorizationPolicy
	// files are the policy and endpoints files read, sorted.
	files []string
	// services and routes index the slices by name (see index). They are
	// never written once made, so Meshes with the same names may share them.
	services map[string]int32
	routes   map[string]int32
}

// Files returns every file Load read (policies and endpoints files), sorted:
// what a watcher must watch.
func (m *Mesh) Files() []string { return append([]string(nil), m.files...) }

// Service returns the service named name, or nil.
func (m *Mesh) Service(name string) *Service {
	if m.services != nil {
		if i, ok := m.services[name]; ok {
			return m.Services[i]
		}
		return nil
	}
	return find(m.Services, name)
}

// Route returns the route named name, or nil.
func (m *Mesh) Route(name string) *Route {
	if m.routes != nil {
		if i, ok := m.routes[name]; ok {
			return m.Routes[i]
		}
		return nil
	}
	return find(m.Routes, name)
}

// Gateway returns the gateway named name, or nil.
func (m *Mesh) Gateway(name string) *Gateway { return find(m.Gateways, name) }

// index makes Service and Route lookups constant-time; Load calls it once
// the documents are merged (the slices must not change afterwards). The
// maps of prev are reused when the names are the same, as they are after
// most policy changes; prev is updated otherwise.
func (m *Mesh) index(prev *meshIndex) {
	m.services = prev.services.of(m.Services)
	m.routes = prev.routes.of(m.Routes)
}

// meshIndex is what a Loader keeps of the last Mesh's indexes.
type meshIndex struct {
	services nameIndex[*Service]
	routes   nameIndex[*Route]
}

// nameIndex maps the names of a sorted kind to their positions.
type nameIndex[T named] struct {
	names []string
	pos   map[string]int32
}

// same reports whether docs have x's names, in x's order.
func (x *nameIndex[T]) same(docs []T) bool {
	if x.pos == nil || len(x.names) != len(docs) {
		return false
	}
	for i, d := range docs {
		// Unchanged documents share their name's bytes with the cache,
		// so this is mostly a pointer comparison.
		if d.name() != x.names[i] {
			return false
		}
	}
	return true
}

// of returns the index of docs, from x when the names are x's.
func (x *nameIndex[T]) of(docs []T) map[string]int32 {
	if x.same(docs) {
		return x.pos
	}
	x.names = make([]string, len(docs))
	x.pos = make(map[string]int32, len(docs))
	for i, d := range docs {
		x.names[i] = d.name()
		x.pos[d.name()] = int32(i)
	}
	return x.pos
}

// named is a document kind; the slices of a Mesh are sorted by name.
type named interface{ name() string }

func (d *doc) name() string { return d.Metadata.Name }

func find[T named](docs []T, name string) T {
	i, ok := slices.BinarySearchFunc(docs, name, func(d T, n string) int { return strings.Compare(d.name(), n) })
	if !ok {
		var zero T
		return zero
	}
	return docs[i]
}

// Metadata names a document, as in Kubernetes. Names are unique per kind
// across the mesh; the namespace scopes workload identities.
type Metadata struct {
	Name      string            `yaml:"name" doc:"unique name of the document within its kind (DNS label)"`
	Namespace string            `yaml:"namespace" doc:"namespace of the workload identity; default \"default\""`
	Labels    map[string]string `yaml:"labels" doc:"free-form labels"`
}

// Source is where a document starts.
type Source struct {
	File string
	Line int
	Col  int
}

func (s Source) String() string { return fmt.Sprintf("%s:%d:%d", s.File, s.Line, s.Col) }

// doc is what every document kind has besides its spec.
type doc struct {
	Metadata Metadata
	Source   Source
	// pos maps a field path ("spec.split[1].weight") to its position in
	// the text the document was decoded from; it is shared with the
	// Loader's cache and never written after decoding. Position places it
	// in file, shift lines down.
	pos   map[string]Source
	file  string
	shift int
	// checked is set when the document's own validation checks (those
	// reading no other document) passed when it was decoded.
	checked bool
}

// Position returns where the field at path was written, or the closest
// enclosing field's position, or the document's start.
func (d *doc) Position(path string) Source {
	for p := path; p != ""; p = parentPath(p) {
		if s, ok := d.pos[p]; ok {
			if d.file != "" {
				s.File = d.file
			}
			s.Line += d.shift
			return s
		}
	}
	return d.Source
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// MeshConfig is the kind Mesh: mesh-wide settings.
type MeshConfig struct {
	doc
	Spec MeshSpec
}

// Service is the kind Service: an inference backend with versions.
type Service struct {
	doc
	Spec ServiceSpec
}

// Route is the kind Route: a match and what to do with matching requests.
type Route struct {
	doc
	Spec RouteSpec
}

// Gateway is the kind Gateway: a listener at the edge of the mesh.
type Gateway struct {
	doc
	Spec GatewaySpec
}

// Sidecar is the kind Sidecar: the inbound and outbound listeners of the
// Envoy beside one service's instances.
type Sidecar struct {
	doc
	Spec SidecarSpec
}

// AuthorizationPolicy is the kind AuthorizationPolicy: who may call a
// service.
type AuthorizationPolicy struct {
	doc
	Spec AuthorizationSpec
}

// MeshSpec holds the mesh-wide settings.
type MeshSpec struct {
	TrustDomain  string        `yaml:"trustDomain" doc:"SPIFFE trust domain; default maestro.local"`
	MTLS         MTLS          `yaml:"mtls" doc:"mutual TLS between sidecars"`
	CA           CA            `yaml:"ca" doc:"certificate authority issuing workload certificates"`
	Certificates Certificates  `yaml:"certificates" doc:"workload certificate lifetime and rotation"`
	Tracing      *Tracing      `yaml:"tracing" doc:"Envoy tracing to an OTLP collector"`
	Filters      FilterModules `yaml:"filters" doc:"where Envoy loads the wasm filters from"`
	ModelHeader  string        `yaml:"modelHeader" doc:"request header naming the model on gRPC; default x-maestro-model"`
}

// mTLS modes.
const (
	MTLSStrict     = "STRICT"
	MTLSPermissive = "PERMISSIVE"
	MTLSDisable    = "DISABLE"
)

// MTLS is the mesh's mutual TLS mode.
type MTLS struct {
	Mode string `yaml:"mode" enum:"STRICT,PERMISSIVE,DISABLE" doc:"STRICT requires client certificates on sidecar inbound listeners; default STRICT"`
}

// Issuers.
const (
	IssuerBuiltin = "builtin"
	IssuerVault   = "vault"
)

// CA chooses and configures the certificate issuer.
type CA struct {
	Issuer  string     `yaml:"issuer" enum:"builtin,vault" doc:"builtin (default) or vault"`
	Builtin *BuiltinCA `yaml:"builtin" doc:"settings of the built-in CA"`
	Vault   *VaultCA   `yaml:"vault" doc:"settings of Vault PKI; required when issuer is vault"`
}

// BuiltinCA keeps its root in a state directory so restarts keep the trust
// root.
type BuiltinCA struct {
	StateDir string   `yaml:"stateDir" doc:"directory holding the CA key (0600); default .maestro/ca"`
	RootTTL  Duration `yaml:"rootTtl" doc:"lifetime of the root certificate; default 8760h"`
}

// Vault modes: Vault makes the key (issue) or signs Maestro's CSR (sign).
const (
	VaultIssue = "issue"
	VaultSign  = "sign"
)

// VaultCA issues through Vault's PKI secrets engine.
type VaultCA struct {
	Address  string    `yaml:"address" doc:"Vault address, e.g. https://vault:8200"`
	PKIMount string    `yaml:"pkiMount" doc:"mount path of the PKI engine; default pki"`
	Role     string    `yaml:"role" doc:"PKI role used for pki/issue/<role> or pki/sign/<role>"`
	Mode     string    `yaml:"mode" enum:"issue,sign" doc:"issue (Vault makes the key, default) or sign (Maestro sends a CSR)"`
	CACert   string    `yaml:"caCert" doc:"PEM file of the CA that signed Vault's TLS certificate"`
	Auth     VaultAuth `yaml:"auth" doc:"how Maestro logs in to Vault"`
}

// Vault auth methods.
const (
	AuthToken      = "token"
	AuthAppRole    = "approle"
	AuthKubernetes = "kubernetes"
)

// VaultAuth says how to log in. Secrets are never inline: each is read
// from an environment variable or a file.
type VaultAuth struct {
	Method   string    `yaml:"method" enum:"token,approle,kubernetes" doc:"token, approle or kubernetes"`
	Mount    string    `yaml:"mount" doc:"auth mount path; default the method's name"`
	Token    SecretRef `yaml:"token" doc:"the token (method token); default env VAULT_TOKEN"`
	RoleID   SecretRef `yaml:"roleId" doc:"AppRole role_id (method approle)"`
	SecretID SecretRef `yaml:"secretId" doc:"AppRole secret_id (method approle)"`
	Role     string    `yaml:"role" doc:"Kubernetes auth role (method kubernetes)"`
	JWT      SecretRef `yaml:"jwt" doc:"service account token (method kubernetes); default the pod's token file"`
}

// SecretRef points at a secret without containing it: exactly one of Env
// and File.
type SecretRef struct {
	Env  string `yaml:"env" doc:"environment variable holding the secret"`
	File string `yaml:"file" doc:"file holding the secret"`
}

// IsZero reports whether neither source is set.
func (r SecretRef) IsZero() bool { return r.Env == "" && r.File == "" }

// Certificates sets workload certificate lifetimes.
type Certificates struct {
	TTL Duration `yaml:"ttl" doc:"lifetime of workload certificates; default 24h"`
	// RotateAt is the share of the lifetime after which a certificate is
	// re-issued (with jitter).
	RotateAt float64 `yaml:"rotateAt" doc:"share of the lifetime after which certificates are re-issued, in (0, 1); default 0.6667"`
}

// Tracing points Envoy's OpenTelemetry tracer at a collector service.
type Tracing struct {
	Collector          ServiceRef `yaml:"collector" doc:"the OTLP/gRPC collector, a Service of the mesh"`
	SamplingPercentage float64    `yaml:"samplingPercentage" doc:"share of requests traced, 0..100; default 1"`
	ServiceName        string     `yaml:"serviceName" doc:"service.name of the spans; default the node ID"`
}

// ServiceRef names a service version.
type ServiceRef struct {
	Service string `yaml:"service" doc:"a Service's name"`
	Version string `yaml:"version" doc:"one of its versions; default its only version"`
}

// FilterModules locates the wasm filters' code.
type FilterModules struct {
	Fanout WasmModule `yaml:"fanout" doc:"the fanout filter (ensembles, compared shadows)"`
	SLO    WasmModule `yaml:"slo" doc:"the slo filter"`
}

// WasmModule is a local file or a remote module checked by sha256.
type WasmModule struct {
	Path   string      `yaml:"path" doc:"local .wasm file as Envoy sees it; default /etc/maestro/wasm/<filter>.wasm"`
	Remote *RemoteWasm `yaml:"remote" doc:"fetch the module over HTTP instead of path"`
}

// RemoteWasm is a module Envoy fetches through a mesh service.
type RemoteWasm struct {
	URL     string `yaml:"url" doc:"http(s) URL of the module"`
	SHA256  string `yaml:"sha256" doc:"hex SHA-256 of the module"`
	Service string `yaml:"service" doc:"the Service serving url"`
	Version string `yaml:"version" doc:"its version; default its only version"`
}

// Protocols.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http"
)

// ServiceSpec describes an inference backend.
type ServiceSpec struct {
	Protocol         string            `yaml:"protocol" enum:"grpc,http" doc:"grpc (HTTP/2, default) or http (HTTP/1.1 REST)"`
	Identity         Identity          `yaml:"identity" doc:"SPIFFE identity of the service's workloads"`
	Versions         []Version         `yaml:"versions" doc:"the versions (subsets), each a cluster"`
	ConnectTimeout   Duration          `yaml:"connectTimeout" doc:"upstream connect timeout; default 1s"`
	HealthCheck      *HealthCheck      `yaml:"healthCheck" doc:"active health checking"`
	ConnectionLimits *ConnectionLimits `yaml:"connectionLimits" doc:"circuit-breaker thresholds"`
	OutlierDetection *OutlierDetection `yaml:"outlierDetection" doc:"ejection of failing endpoints"`
}

// Identity is spiffe://<trust domain>/ns/<namespace>/sa/<serviceAccount>.
type Identity struct {
	Namespace      string `yaml:"namespace" doc:"default metadata.namespace"`
	ServiceAccount string `yaml:"serviceAccount" doc:"default metadata.name"`
}

// SPIFFEID returns the identity's SPIFFE ID in trustDomain.
func (i Identity) SPIFFEID(trustDomain string) string {
	return "spiffe://" + trustDomain + "/ns/" + i.Namespace + "/sa/" + i.ServiceAccount
}

// Version is one subset of a service: static endpoints or an endpoints file.
type Version struct {
	Name          string            `yaml:"name" doc:"version name, e.g. v1"`
	Labels        map[string]string `yaml:"labels" doc:"labels of the subset"`
	Endpoints     []Endpoint        `yaml:"endpoints" doc:"static endpoints"`
	EndpointsFile string            `yaml:"endpointsFile" doc:"a kind Endpoints file, relative to this policy file, watched for changes"`
}

// Endpoint is one instance, where mesh traffic for it arrives (its sidecar's
// inbound port when it has a sidecar).
type Endpoint struct {
	Address string `yaml:"address" doc:"IP address or host name"`
	Port    uint32 `yaml:"port" doc:"port, 1..65535"`
	Weight  uint32 `yaml:"weight" doc:"load-balancing weight; default 1"`
	Region  string `yaml:"region" doc:"locality region; default local"`
	Zone    string `yaml:"zone" doc:"locality zone"`
}

// EndpointsFile is the content of a kind Endpoints file.
type EndpointsFile struct {
	Endpoints []Endpoint `yaml:"endpoints" doc:"the endpoints"`
}

// HealthCheck probes endpoints: gRPC health checking for grpc services, an
// HTTP GET of Path for http ones.
type HealthCheck struct {
	Interval           Duration `yaml:"interval" doc:"default 10s"`
	Timeout            Duration `yaml:"timeout" doc:"default 1s"`
	HealthyThreshold   uint32   `yaml:"healthyThreshold" doc:"default 1"`
	UnhealthyThreshold uint32   `yaml:"unhealthyThreshold" doc:"default 3"`
	Path               string   `yaml:"path" doc:"HTTP path (http services); default /v2/health/ready"`
	GRPCService        string   `yaml:"grpcService" doc:"grpc.health.v1 service name (grpc services)"`
}

// ConnectionLimits are circuit-breaker thresholds; 0 leaves Envoy's default.
type ConnectionLimits struct {
	MaxConnections     uint32 `yaml:"maxConnections"`
	MaxPendingRequests uint32 `yaml:"maxPendingRequests"`
	MaxRequests        uint32 `yaml:"maxRequests"`
	MaxRetries         uint32 `yaml:"maxRetries"`
}

// OutlierDetection ejects failing endpoints; 0 leaves Envoy's default.
type OutlierDetection struct {
	Consecutive5xx     uint32   `yaml:"consecutive5xx"`
	Interval           Duration `yaml:"interval"`
	BaseEjectionTime   Duration `yaml:"baseEjectionTime"`
	MaxEjectionPercent uint32   `yaml:"maxEjectionPercent" doc:"0..100"`
}

// RouteSpec is a match and its traffic policy. The destination is Split,
// or, for an ensemble without a split, the first member.
type RouteSpec struct {
	Service  string          `yaml:"service" doc:"default Service of destinations that name none"`
	Target   string          `yaml:"target" doc:"name proxyless gRPC clients dial as xds:///<target>; default the route's name"`
	Match    RouteMatch      `yaml:"match" doc:"which requests the route takes"`
	Rules    []RouteRule     `yaml:"rules" doc:"header-conditional routing, tried in order before split"`
	Split    []Destination   `yaml:"split" doc:"weighted versions, weights summing to 100; default the service's only version"`
	Shadow   *Shadow         `yaml:"shadow" doc:"mirror a share of requests to another version"`
	Ensemble *Ensemble       `yaml:"ensemble" doc:"call several models and combine them (fanout filter)"`
	SLO      *SLO            `yaml:"slo" doc:"service level objectives (slo filter and alert rules)"`
	Retries  *Retries        `yaml:"retries" doc:"retry policy"`
	Timeout  Duration        `yaml:"timeout" doc:"whole-request timeout; default none"`
	Fault    *FaultInjection `yaml:"fault" doc:"injected delays and aborts, for drills"`
	Rollout  *Rollout        `yaml:"rollout" doc:"promote a version step by step, judged on metrics (docs/rollouts.md)"`
}

// Match protocols.
const (
	MatchAny  = "any"
	MatchGRPC = "grpc"
	MatchHTTP = "http"
)

// OIPInferPath is the Open Inference Protocol's gRPC inference method.
const OIPInferPath = "/inference.GRPCInferenceService/ModelInfer"

// RouteMatch selects requests: by model name (the OIP gRPC path plus the
// model header, and the REST path /v2/models/<model>/), by path prefix or
// exact path; headers must all match too. At most one of Model, PathPrefix
// and Path; none with no headers matches everything.
type RouteMatch struct {
	Model      string        `yaml:"model" doc:"model name: matches gRPC ModelInfer with the model header, and REST /v2/models/<model>/"`
	Protocol   string        `yaml:"protocol" enum:"any,grpc,http" doc:"for model matches: grpc (ModelInfer + model header), http (REST path) or any; default the destination service's protocol"`
	PathPrefix string        `yaml:"pathPrefix" doc:"request path prefix"`
	Path       string        `yaml:"path" doc:"exact request path"`
	Headers    []HeaderMatch `yaml:"headers" doc:"headers that must all match"`
}

// HeaderMatch matches one header: exactly one of Exact, Prefix, Regex and
// Present.
type HeaderMatch struct {
	Name    string `yaml:"name" doc:"header name (lower case)"`
	Exact   string `yaml:"exact" doc:"exact value"`
	Prefix  string `yaml:"prefix" doc:"value prefix"`
	Regex   string `yaml:"regex" doc:"RE2 regular expression on the value"`
	Present bool   `yaml:"present" doc:"the header is present"`
	Invert  bool   `yaml:"invert" doc:"negate the match"`
}

// RouteRule sends requests that also match Headers to Split.
type RouteRule struct {
	Name    string        `yaml:"name" doc:"rule name, unique in the route"`
	Headers []HeaderMatch `yaml:"headers" doc:"headers that must all match"`
	Split   []Destination `yaml:"split" doc:"weighted versions, weights summing to 100"`
}

// Destination is a weighted service version.
type Destination struct {
	Service string `yaml:"service" doc:"default the route's service"`
	Version string `yaml:"version" doc:"a version of the service"`
	Weight  uint32 `yaml:"weight" doc:"percentage of requests; a split sums to 100"`
}

// Shadow mirrors Percentage of requests to a version; its responses are
// dropped. With Compare, the fanout filter sends the copy and compares the
// shadow's outputs with the primary's.
type Shadow struct {
	Service    string  `yaml:"service" doc:"default the route's service"`
	Version    string  `yaml:"version" doc:"version receiving the copies"`
	Percentage float64 `yaml:"percentage" doc:"share of requests mirrored, 0..100; default 100"`
	Compare    bool    `yaml:"compare" doc:"compare the shadow's outputs with the primary's (fanout filter)"`
	Model      string  `yaml:"model" doc:"model name to ask the shadow for; default the request's"`
}

// Ensemble strategies.
const (
	StrategyMean          = "mean"
	StrategyWeightedMean  = "weighted_mean"
	StrategyMajorityVote  = "majority_vote"
	StrategyWeightedVote  = "weighted_vote"
	StrategyMaxConfidence = "max_confidence"
	StrategyStacking      = "stacking"
)

// Ensemble modes.
const (
	ModeParallel = "parallel"
	ModeSequence = "sequence"
)

// Ensemble configures the fanout filter for the route.
type Ensemble struct {
	Mode     string    `yaml:"mode" enum:"parallel,sequence" doc:"parallel (default: call all, combine) or sequence (each output feeds the next)"`
	Members  []Member  `yaml:"members" doc:"the models called"`
	Strategy string    `yaml:"strategy" enum:"mean,weighted_mean,majority_vote,weighted_vote,max_confidence,stacking" doc:"how outputs are combined (parallel); default mean"`
	Quorum   uint32    `yaml:"quorum" doc:"minimum answers; default all members"`
	Timeout  Duration  `yaml:"timeout" doc:"bound on the member calls; default 1s"`
	Stacking *Stacking `yaml:"stacking" doc:"logistic meta-model (strategy stacking)"`
	Weights  string    `yaml:"weights" enum:"static,adaptive" doc:"static (default): the members' weights as written; adaptive: weights follow each member's measured quality"`
	Adaptive *Adaptive `yaml:"adaptive" doc:"bounds and pace of adaptive weights (weights: adaptive)"`
}

// Ensemble weight modes.
const (
	WeightsStatic   = "static"
	WeightsAdaptive = "adaptive"
)

// Adaptive bounds and paces the weights of an adaptive ensemble: every
// Interval each member's quality is measured, smoothed (an exponentially
// weighted moving average with factor Smoothing) and mapped into
// [MinWeight, MaxWeight]. See docs/rollouts.md.
type Adaptive struct {
	MinWeight float64  `yaml:"minWeight" doc:"lowest weight a member can fall to, >= 0; default 0.05"`
	MaxWeight float64  `yaml:"maxWeight" doc:"highest weight, above minWeight; default 1"`
	Interval  Duration `yaml:"interval" doc:"how often weights are re-evaluated, at least 1s; default 30s"`
	Smoothing float64  `yaml:"smoothing" doc:"share of the newest measurement in the moving average, in (0, 1]; default 0.5"`
}

// Member is one model of an ensemble.
type Member struct {
	Service string  `yaml:"service" doc:"default the route's service"`
	Version string  `yaml:"version" doc:"default the service's only version"`
	Model   string  `yaml:"model" doc:"model name to ask for; default the route's match.model"`
	Weight  float64 `yaml:"weight" doc:"weight for weighted strategies; default 1"`
}

// Stacking is a logistic meta-model: one weight per member, in order.
type Stacking struct {
	Weights []float64 `yaml:"weights" doc:"one weight per member, in members order"`
	Bias    float64   `yaml:"bias" doc:"intercept"`
}

// SLO holds the route's objectives. Percentages are 0..100.
type SLO struct {
	Availability float64            `yaml:"availability" doc:"target share of requests without server errors, in percent (e.g. 99.9)"`
	ErrorRate    float64            `yaml:"errorRate" doc:"highest share of failed requests, in percent (e.g. 1)"`
	Latency      []LatencyObjective `yaml:"latency" doc:"latency percentile targets"`
	Window       Duration           `yaml:"window" doc:"error budget period; default 30d"`
	BurnWindows  []BurnWindow       `yaml:"burnWindows" doc:"burn-rate windows the slo filter reports; default 1h@14.4, 6h@6, 3d@1"`
	BudgetHeader bool               `yaml:"budgetHeader" doc:"add the remaining error budget to responses"`
}

// LatencyObjective says Percentile of requests finish within Threshold.
type LatencyObjective struct {
	Percentile float64  `yaml:"percentile" doc:"e.g. 99"`
	Threshold  Duration `yaml:"threshold" doc:"e.g. 250ms"`
}

// BurnWindow is a rolling window and the burn rate that triggers a report.
type BurnWindow struct {
	Window   Duration `yaml:"window" doc:"rolling window, e.g. 1h"`
	BurnRate float64  `yaml:"burnRate" doc:"burn rate threshold, e.g. 14.4"`
}

// Rollout promotes Version of the route's split step by step: each
// StepInterval the controller judges the version on its own metrics and
// moves it to the next weight of Steps, holds, or rolls it back to 0. The
// other destination of the split is the stable version; it gets the rest.
type Rollout struct {
	Version      string          `yaml:"version" doc:"the version promoted, of the split's service; it may be absent from the split (weight 0)"`
	Steps        []uint32        `yaml:"steps" doc:"the version's weights in percent, increasing, ending at 100; default [5, 25, 50, 100]"`
	StepInterval Duration        `yaml:"stepInterval" doc:"time at each step before it is judged, at least 1s; default 1m"`
	MinRequests  uint32          `yaml:"minRequests" doc:"requests the version must serve at a step before it is judged; default 100"`
	Analysis     RolloutAnalysis `yaml:"analysis" doc:"what the version is judged on"`
}

// RolloutAnalysis are the thresholds a rollout step must meet; a breach of
// any rolls the version back. Unset thresholds default from the route's SLO.
type RolloutAnalysis struct {
	MaxErrorRate float64            `yaml:"maxErrorRate" doc:"highest percent of failed requests; default the SLO's errorRate, or 100 - availability, or 1"`
	Latency      []LatencyObjective `yaml:"latency" doc:"latency percentiles the version must meet; default the SLO's latency"`
	FastBurnRate float64            `yaml:"fastBurnRate" doc:"highest error-budget burn rate over one step; default the SLO's first burn window's rate (needs availability or errorRate)"`
	SlowBurnRate float64            `yaml:"slowBurnRate" doc:"highest burn rate over the whole rollout; default the SLO's second burn window's rate"`
	MinAgreement float64            `yaml:"minAgreement" doc:"lowest percent of compared rows where the version, as a compared shadow, agrees with the primary; unset: not judged"`
}

// Retries retries failed requests.
type Retries struct {
	Attempts      uint32   `yaml:"attempts" doc:"retries after the first try; default 2"`
	PerTryTimeout Duration `yaml:"perTryTimeout" doc:"bound on each try"`
	On            []string `yaml:"on" doc:"Envoy retry conditions; default connect-failure, reset, unavailable, 5xx"`
}

// FaultInjection injects failures for drills.
type FaultInjection struct {
	Delay *DelayFault `yaml:"delay" doc:"delay a share of requests"`
	Abort *AbortFault `yaml:"abort" doc:"fail a share of requests"`
}

// DelayFault delays Percentage of requests by Duration.
type DelayFault struct {
	Percentage float64  `yaml:"percentage" doc:"0..100"`
	Duration   Duration `yaml:"duration" doc:"added delay"`
}

// AbortFault fails Percentage of requests with an HTTP or a gRPC status.
type AbortFault struct {
	Percentage float64 `yaml:"percentage" doc:"0..100"`
	HTTPStatus uint32  `yaml:"httpStatus" doc:"HTTP status 200..599"`
	GRPCStatus uint32  `yaml:"grpcStatus" doc:"gRPC status code 1..16"`
}

// GatewaySpec is a listener at the edge, serving routes in order.
type GatewaySpec struct {
	Nodes    NodeSelector `yaml:"nodes" doc:"which gateway nodes get this listener"`
	Address  string       `yaml:"address" doc:"bind address; default 0.0.0.0"`
	Port     uint32       `yaml:"port" doc:"listener port"`
	Protocol string       `yaml:"protocol" enum:"grpc,http" doc:"grpc (HTTP/2 only, default) or http (HTTP/1.1 and HTTP/2)"`
	Hosts    []string     `yaml:"hosts" doc:"accepted :authority values; default *"`
	Routes   []string     `yaml:"routes" doc:"Route names, in match order"`
	Identity Identity     `yaml:"identity" doc:"the gateway's SPIFFE identity; default namespace/name from metadata"`
}

// NodeSelector picks nodes by exact ID or by the service they announce
// (the maestro.service node metadata; for gateways, the gateway's name).
type NodeSelector struct {
	IDs     []string `yaml:"ids" doc:"exact node IDs"`
	Service string   `yaml:"service" doc:"announced service; empty matches any node of the role"`
}

// Sidecar modes.
const (
	// SidecarEnvoy is an Envoy beside each instance.
	SidecarEnvoy = "envoy"
	// SidecarProxyless is no Envoy: the instances are xDS-enabled gRPC
	// servers (google.golang.org/grpc/xds.NewGRPCServer) that take their
	// inbound mTLS and authorization from the control plane themselves.
	SidecarProxyless = "proxyless"
)

// SidecarSpec gives a service's sidecar its listeners.
type SidecarSpec struct {
	Service  string    `yaml:"service" doc:"the Service whose instances this sidecar fronts"`
	Mode     string    `yaml:"mode" enum:"envoy,proxyless" doc:"envoy (default): an Envoy beside each instance; proxyless: the workloads use xDS themselves, as gRPC clients and, with inbound.port, as xDS-enabled gRPC servers"`
	Nodes    []string  `yaml:"nodes" doc:"exact node IDs; default any sidecar announcing the service"`
	Inbound  Inbound   `yaml:"inbound" doc:"mesh traffic into the local instance"`
	Outbound *Outbound `yaml:"outbound" doc:"the local application's calls to other services"`
}

// Inbound is the sidecar's listener for mesh traffic to the local instance.
type Inbound struct {
	Address string `yaml:"address" doc:"bind address; default 0.0.0.0"`
	Port    uint32 `yaml:"port" doc:"listener port; default 15006 (mode envoy); the gRPC server's own port, or none for a client only (mode proxyless)"`
	AppPort uint32 `yaml:"appPort" doc:"the local instance's port on 127.0.0.1 (mode envoy)"`
}

// Outbound is the sidecar's listener for the application's outgoing calls.
type Outbound struct {
	Address string   `yaml:"address" doc:"bind address; default 127.0.0.1"`
	Port    uint32   `yaml:"port" doc:"listener port; default 15001"`
	Routes  []string `yaml:"routes" doc:"Route names, in match order"`
}

// Authorization actions.
const (
	ActionAllow = "ALLOW"
	ActionDeny  = "DENY"
)

// AuthorizationSpec says which callers may (ALLOW) or may not (DENY) call a
// service; it becomes an RBAC filter on the service's sidecar inbound
// listener. ALLOW with no rule matching denies the request.
type AuthorizationSpec struct {
	Service string      `yaml:"service" doc:"the Service protected (it needs a Sidecar)"`
	Action  string      `yaml:"action" enum:"ALLOW,DENY" doc:"ALLOW (default) or DENY"`
	Rules   []AuthzRule `yaml:"rules" doc:"a request matching any rule gets the action"`
}

// AuthzRule matches callers (From) and requests (To); empty lists match any.
type AuthzRule struct {
	Name string    `yaml:"name" doc:"rule name, unique in the policy"`
	From AuthzFrom `yaml:"from" doc:"callers"`
	To   AuthzTo   `yaml:"to" doc:"requests"`
}

// AuthzFrom names callers by SPIFFE ID, namespace, service or gateway.
type AuthzFrom struct {
	Identities []string `yaml:"identities" doc:"SPIFFE IDs; * is any authenticated peer"`
	Namespaces []string `yaml:"namespaces" doc:"every Service and Gateway identity in these namespaces"`
	Services   []string `yaml:"services" doc:"Service names"`
	Gateways   []string `yaml:"gateways" doc:"Gateway names"`
}

// AuthzTo names requests by model, route or path.
type AuthzTo struct {
	Models       []string `yaml:"models" doc:"model names (gRPC model header and REST path)"`
	Routes       []string `yaml:"routes" doc:"Route names: requests their match takes"`
	Paths        []string `yaml:"paths" doc:"exact paths"`
	PathPrefixes []string `yaml:"pathPrefixes" doc:"path prefixes"`
}

// Duration is a time.Duration written as a Go duration string ("250ms",
// "1h30m"), with "d" for days also accepted ("30d").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d as Go does.
func (d Duration) String() string { return time.Duration(d).String() }

// ParseDuration parses a Go duration string, also accepting a whole number
// of days ("30d"). Negative durations are rejected.
func ParseDuration(s string) (Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q: want e.g. 250ms, 1h30m or 30d", s)
		}
		return Duration(time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want e.g. 250ms, 1h30m or 30d", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return Duration(d), nil
}
