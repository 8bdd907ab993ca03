// Package bootstrap writes the files a node needs to reach the control
// plane: an Envoy bootstrap (node identity, the ADS cluster, admin, stats)
// and a gRPC xDS bootstrap for proxyless gRPC clients. The node's role and
// service go into its metadata under the keys the server groups nodes by
// (model.MetadataRole, model.MetadataService).
package bootstrap

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/controlplane/model"
)

// XDSCluster is the name of the static cluster pointing at the control
// plane in Envoy bootstraps.
const XDSCluster = "maestro-xds"

// DefaultAdminAddr is Envoy's admin listener: loopback only, since the
// admin API can change the proxy's state.
const DefaultAdminAddr = "127.0.0.1:9901"

// ADS connection keepalive: Envoy pings the control plane so a silently
// dropped connection (NAT timeout, control plane replica gone) is noticed
// within seconds and Envoy reconnects to another replica. The interval is
// above the server's minimum allowed ping interval (server.KeepaliveMinTime).
const (
	keepaliveInterval = 30 * time.Second
	keepaliveTimeout  = 5 * time.Second
	connectTimeout    = 5 * time.Second
)

// Config describes the node.
type Config struct {
	// NodeID is the node's unique ID; required.
	NodeID string
	// Role is gateway or sidecar for Envoy, proxyless for gRPC clients.
	Role model.Role
	// Service is the service a sidecar fronts; required for sidecars.
	Service string
	// XDSAddr is the control plane's host:port; required.
	XDSAddr string
	// AdminAddr is Envoy's admin address; DefaultAdminAddr if empty.
	AdminAddr string
	// TLS, when set, makes the channel to the control plane mTLS; nil
	// keeps it plaintext (for a control plane run with --insecure).
	TLS *TLS
	// Token is the credential an Envoy node presents on its ADS stream
	// before it holds a certificate (a bootstrap token of the control
	// plane's --bootstrap-tokens, or a Kubernetes service-account token
	// for --k8s-token-review). Envoy's GrpcService sends only literal
	// initial_metadata, so the token is inlined and a rotated token needs
	// a new bootstrap. gRPC bootstraps take TokenFile instead.
	Token string
	// TokenFile is the token's path for gRPC bootstraps: gRPC-Go's
	// jwt_token_file call credentials (gRFC A97) read it again as the
	// token nears its "exp", so a projected service-account token
	// rotates by itself. gRPC sends it only over TLS.
	TokenFile string
}

// TokenHeader is the metadata key the control plane reads a token from
// (certs/secretauth.TokenHeader), as "Bearer <token>".
const TokenHeader = "authorization"

// TLS is the node's identity as files (what `maestro certs issue` writes)
// and the identity the control plane must present.
type TLS struct {
	// CertFile is the PEM certificate chain (leaf first); required
	// unless the node authenticates with a token (Config.Token,
	// Config.TokenFile), when CertFile and KeyFile may both be empty: the
	// channel is then TLS that checks the control plane only.
	CertFile string
	// KeyFile is the PEM private key; required with CertFile.
	KeyFile string
	// CAFile is the PEM trust bundle the control plane's certificate
	// must verify against; required.
	CAFile string
	// ServerID is the control plane's SPIFFE ID; Envoy accepts no other
	// URI SAN on the control plane's certificate. Required.
	ServerID spiffe.ID
	// SPIFFEBundleMapFile, optional, is a SPIFFE trust bundle map (see
	// SPIFFEBundleMap) for gRPC bootstraps. gRPC's A65 "tls" credentials
	// otherwise verify the control plane's host name, which a SPIFFE
	// certificate does not carry; with the map (and
	// GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE=true in the client's environment,
	// tested with gRPC-Go v1.85) gRPC verifies the chain against the trust domain's
	// roots instead. Envoy bootstraps ignore it.
	SPIFFEBundleMapFile string
}

// GRPCCertProvider is the certificate_providers entry gRPC bootstraps
// carry, the instance name xDS-provided (proxyless) TLS contexts point at.
const GRPCCertProvider = "maestro"

// hasIdentity reports whether the node presents a client certificate.
func (t *TLS) hasIdentity() bool { return t.CertFile != "" || t.KeyFile != "" }

func (t *TLS) check(token bool) error {
	var errs []error
	files := []struct{ name, v string }{{"ca", t.CAFile}}
	if !token || t.hasIdentity() {
		files = append(files, struct{ name, v string }{"cert", t.CertFile}, struct{ name, v string }{"key", t.KeyFile})
	}
	for _, f := range files {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("tls %s: a file is required", f.name))
		}
	}
	if err := t.ServerID.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("tls server id: %w", err))
	}
	return errors.Join(errs...)
}

func (c Config) check(roles ...model.Role) error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("node: an ID is required"))
	}
	okRole := false
	for _, r := range roles {
		okRole = okRole || c.Role == r
	}
	if !okRole {
		errs = append(errs, fmt.Errorf("role %q: want one of %v", c.Role, roles))
	}
	if c.Role == model.RoleSidecar && c.Service == "" {
		errs = append(errs, errors.New("service: a sidecar needs the service it fronts"))
	}
	if _, _, err := hostPort(c.XDSAddr); err != nil {
		errs = append(errs, fmt.Errorf("xds address: %w", err))
	}
	if c.TLS != nil {
		errs = append(errs, c.TLS.check(c.Token != "" || c.TokenFile != ""))
	}
	if c.Token != "" && strings.ContainsAny(c.Token, " \t\r\n") {
		// The value becomes a header: a line break would forge another.
		errs = append(errs, errors.New("token: contains white space"))
	}
	return errors.Join(errs...)
}

func hostPort(addr string) (string, uint32, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", addr, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", 0, fmt.Errorf("%q: port must be 1-65535", addr)
	}
	if host == "" {
		return "", 0, fmt.Errorf("%q: host is empty", addr)
	}
	return host, uint32(p), nil
}

func (c Config) metadata() map[string]any {
	md := map[string]any{model.MetadataRole: string(c.Role)}
	if c.Service != "" {
		md[model.MetadataService] = c.Service
	}
	return md
}

// envoyCluster is the node's cluster name in Envoy's stats: the service
// for sidecars, the role otherwise.
func (c Config) envoyCluster() string {
	if c.Service != "" {
		return c.Service
	}
	return string(c.Role)
}

// Envoy returns the bootstrap of an Envoy gateway or sidecar, checked with
// ValidateAll.
//
// # Errors
//
// A missing node ID, a role other than gateway or sidecar, a sidecar
// without service, or an address that is not host:port.
func Envoy(c Config) (*bootstrapv3.Bootstrap, error) {
	if err := c.check(model.RoleGateway, model.RoleSidecar); err != nil {
		return nil, err
	}
	if c.TokenFile != "" && c.Token == "" {
		return nil, errors.New("token: Envoy cannot read its xDS token from a file; pass the token itself")
	}
	if c.AdminAddr == "" {
		c.AdminAddr = DefaultAdminAddr
	}
	adminHost, adminPort, err := hostPort(c.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("admin address: %w", err)
	}
	host, port, _ := hostPort(c.XDSAddr)
	md, err := structpb.NewStruct(c.metadata())
	if err != nil {
		return nil, fmt.Errorf("node metadata: %w", err)
	}
	http2, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
				ConnectionKeepalive: &corev3.KeepaliveSettings{
					Interval: durationpb.New(keepaliveInterval),
					Timeout:  durationpb.New(keepaliveTimeout),
				},
			}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("xds cluster protocol options: %w", err)
	}
	discovery := clusterv3.Cluster_STRICT_DNS
	if _, err := netip.ParseAddr(host); err == nil {
		discovery = clusterv3.Cluster_STATIC
	}
	ads := &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: c.NodeID, Cluster: c.envoyCluster(), Metadata: md},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:                   corev3.ApiConfigSource_GRPC,
				TransportApiVersion:       corev3.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*corev3.GrpcService{{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSCluster}},
					InitialMetadata: tokenMetadata(c.Token),
				}},
			},
			LdsConfig: ads,
			CdsConfig: ads,
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{{
			Name:                          XDSCluster,
			ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: discovery},
			ConnectTimeout:                durationpb.New(connectTimeout),
			TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": http2},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: XDSCluster,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socket(host, port)}},
				}}}},
			},
		}}},
		Admin:       &bootstrapv3.Admin{Address: socket(adminHost, adminPort)},
		StatsConfig: statsConfig(),
		// An admin layer lets operators change runtime keys (e.g. a
		// shadow's fraction) through Envoy's /runtime_modify.
		LayeredRuntime: &bootstrapv3.LayeredRuntime{Layers: []*bootstrapv3.RuntimeLayer{
			{Name: "static", LayerSpecifier: &bootstrapv3.RuntimeLayer_StaticLayer{StaticLayer: &structpb.Struct{}}},
			{Name: "admin", LayerSpecifier: &bootstrapv3.RuntimeLayer_AdminLayer_{AdminLayer: &bootstrapv3.RuntimeLayer_AdminLayer{}}},
		}},
	}
	if c.TLS != nil {
		ts, err := upstreamTLS(c.TLS)
		if err != nil {
			return nil, err
		}
		b.StaticResources.Clusters[0].TransportSocket = ts
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	return b, nil
}

// upstreamTLS is the xDS cluster's mTLS: the node's certificate, the
// bundle, and only the control plane's SPIFFE ID accepted, since any
// workload of the mesh holds a certificate from the same CA.
func upstreamTLS(t *TLS) (*corev3.TransportSocket, error) {
	file := func(name string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: name}}
	}
	var own []*tlsv3.TlsCertificate
	if t.hasIdentity() {
		own = []*tlsv3.TlsCertificate{{CertificateChain: file(t.CertFile), PrivateKey: file(t.KeyFile)}}
	}
	ctx, err := anypb.New(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificates: own,
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: file(t.CAFile),
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_URI,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: t.ServerID.String()}},
			}},
		}},
		// gRPC needs HTTP/2; a server that negotiates nothing else must
		// see it offered.
		AlpnProtocols: []string{"h2"},
	}})
	if err != nil {
		return nil, fmt.Errorf("xds cluster tls: %w", err)
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: ctx}}, nil
}

// tokenMetadata is the ADS stream's initial metadata carrying token, or
// none without one.
func tokenMetadata(token string) []*corev3.HeaderValue {
	if token == "" {
		return nil
	}
	return []*corev3.HeaderValue{{Key: TokenHeader, Value: "Bearer " + token}}
}

func socket(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// EnvoyJSON returns Envoy(c) as indented JSON.
func EnvoyJSON(c Config) ([]byte, error) {
	b, err := Envoy(c)
	if err != nil {
		return nil, err
	}
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode envoy bootstrap: %w", err)
	}
	// protojson varies its whitespace on purpose; re-indenting makes the
	// output byte-stable for diffs and golden files.
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return nil, fmt.Errorf("encode envoy bootstrap: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// EnvoyYAML returns Envoy(c) as YAML, the form Envoy's -c flag and
// Kubernetes config maps usually carry.
func EnvoyYAML(c Config) ([]byte, error) {
	j, err := EnvoyJSON(c)
	if err != nil {
		return nil, err
	}
	out, err := yaml.JSONToYAML(j)
	if err != nil {
		return nil, fmt.Errorf("encode envoy bootstrap: %w", err)
	}
	return out, nil
}

// grpcBootstrap is gRPC's xDS bootstrap format (gRFC A27).
type grpcBootstrap struct {
	XDSServers []grpcServer `json:"xds_servers"`
	Node       grpcNode     `json:"node"`
	// CertificateProviders (gRFC A29) back the TLS contexts the control
	// plane sends proxyless clients and servers.
	CertificateProviders map[string]grpcCertProvider `json:"certificate_providers,omitempty"`
}

type grpcCertProvider struct {
	PluginName string    `json:"plugin_name"`
	Config     grpcFiles `json:"config"`
}

// grpcFiles is the file_watcher plugin's config, which gRFC A65 reuses
// for the "tls" channel credentials.
type grpcFiles struct {
	CertificateFile   string `json:"certificate_file,omitempty"`
	PrivateKeyFile    string `json:"private_key_file,omitempty"`
	CACertificateFile string `json:"ca_certificate_file"`
	SPIFFEBundleMap   string `json:"spiffe_trust_bundle_map_file,omitempty"`
}

// SPIFFEBundleMap encodes the PEM roots caPEM (a ca.pem) as a SPIFFE
// trust bundle map (JSON, the "trust_domains" document gRPC's
// spiffe_trust_bundle_map_file reads) for the trust domain of id.
func SPIFFEBundleMap(id spiffe.ID, caPEM []byte) ([]byte, error) {
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("spiffe bundle map: %w", err)
	}
	var roots []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, caPEM = pem.Decode(caPEM)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("spiffe bundle map: PEM block %d is %q, want CERTIFICATE", n, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("spiffe bundle map: PEM block %d: %w", n, err)
		}
		roots = append(roots, c)
	}
	if len(roots) == 0 {
		return nil, errors.New("spiffe bundle map: no PEM certificates")
	}
	td, err := spiffeid.TrustDomainFromString(id.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("spiffe bundle map: %w", err)
	}
	doc, err := spiffebundle.FromX509Authorities(td, roots).Marshal()
	if err != nil {
		return nil, fmt.Errorf("spiffe bundle map: %w", err)
	}
	out, err := json.MarshalIndent(map[string]map[string]json.RawMessage{"trust_domains": {td.Name(): doc}}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("spiffe bundle map: %w", err)
	}
	return append(out, '\n'), nil
}

type grpcServer struct {
	ServerURI    string            `json:"server_uri"`
	ChannelCreds []grpcChannelCred `json:"channel_creds"`
	// CallCreds (gRFC A97) are read by gRPC-Go only with
	// GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true; a client without it
	// skips them and its stream is refused as anonymous.
	CallCreds      []grpcCallCred `json:"call_creds,omitempty"`
	ServerFeatures []string       `json:"server_features"`
}

type grpcCallCred struct {
	Type   string            `json:"type"`
	Config map[string]string `json:"config"`
}

type grpcChannelCred struct {
	Type   string     `json:"type"`
	Config *grpcFiles `json:"config,omitempty"`
}

type grpcNode struct {
	ID       string         `json:"id"`
	Cluster  string         `json:"cluster,omitempty"`
	Metadata map[string]any `json:"metadata"`
	Locality map[string]any `json:"locality"`
}

// GRPC returns a gRPC xDS bootstrap (JSON) for a proxyless client: point
// GRPC_XDS_BOOTSTRAP at it, or pass it to the xds resolver. With c.TLS the
// channel to the control plane uses gRFC A65 "tls" credentials from those
// files, and a file_watcher certificate provider named GRPCCertProvider
// serves the same identity to xDS-configured TLS; without, the channel is
// plaintext.
//
// # Errors
//
// A missing node ID, a role other than proxyless, or an address that is
// not host:port; a token without TLS (gRPC sends call credentials only
// over TLS) or inlined rather than in a file.
func GRPC(c Config) ([]byte, error) {
	if err := c.check(model.RoleProxyless); err != nil {
		return nil, err
	}
	if c.Token != "" && c.TokenFile == "" {
		return nil, errors.New("token: gRPC reads its xDS token from a file; pass the file")
	}
	if c.TokenFile != "" && c.TLS == nil {
		return nil, errors.New("token file: gRPC sends call credentials only over TLS; give the control plane's CA file")
	}
	b := grpcBootstrap{
		XDSServers: []grpcServer{{
			ServerURI:    c.XDSAddr,
			ChannelCreds: []grpcChannelCred{{Type: "insecure"}},
			// xds_v3 tells the client the server speaks xDS v3.
			ServerFeatures: []string{"xds_v3"},
		}},
		Node: grpcNode{ID: c.NodeID, Cluster: c.envoyCluster(), Metadata: c.metadata(), Locality: map[string]any{}},
	}
	if t := c.TLS; t != nil {
		files := grpcFiles{CertificateFile: t.CertFile, PrivateKeyFile: t.KeyFile, CACertificateFile: t.CAFile, SPIFFEBundleMap: t.SPIFFEBundleMapFile}
		b.XDSServers[0].ChannelCreds = []grpcChannelCred{{Type: "tls", Config: &files}}
		b.CertificateProviders = map[string]grpcCertProvider{GRPCCertProvider: {PluginName: "file_watcher", Config: files}}
	}
	if c.TokenFile != "" {
		// gRPC-Go parses the file as a JWT and needs its "exp" claim
		// (projected service-account tokens have one).
		b.XDSServers[0].CallCreds = []grpcCallCred{{Type: "jwt_token_file", Config: map[string]string{"jwt_token_file": c.TokenFile}}}
	}
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode grpc bootstrap: %w", err)
	}
	return append(out, '\n'), nil
}
