package xds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// GRPCCertProvider is the certificate provider instance proxyless gRPC
// clients must define in their bootstrap (`certificate_providers`): gRPC
// reads certificates from such providers, not from SDS. The certificate
// names it is asked for are the model's secret names.
const GRPCCertProvider = "maestro"

// Secret creates an envoy Secret from s.
func Secret(s *model.Secret) *tlsv3.Secret {
	if s.Certificate != nil {
		return &tlsv3.Secret{Name: s.Name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inlineBytes(s.Certificate.ChainPEM),
			PrivateKey:       inlineBytes(s.Certificate.KeyPEM),
		}}}
	}
	return &tlsv3.Secret{Name: s.Name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: inlineBytes(s.TrustBundle),
	}}}
}

// inlineBytes wraps b as a data source.
func inlineBytes(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// sdsSecret refers to the secret name over ADS.
func sdsSecret(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsSource()}
}

// sanMatchers accepts peers whose certificate has any of the URI SANs.
func sanMatchers(sans []string) []*tlsv3.SubjectAltNameMatcher {
	var out []*tlsv3.SubjectAltNameMatcher
	for _, s := range sans {
		out = append(out, &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: exact(s)})
	}
	return out
}

// sdsTLSContext uses the SDS certificate cert (if any) and verifies peers
// with the SDS bundle trust (if any), accepting only sans.
func sdsTLSContext(cert, trust string, sans []string) *tlsv3.CommonTlsContext {
	out := &tlsv3.CommonTlsContext{}
	if cert != "" {
		out.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sdsSecret(cert)}
	}
	if trust != "" {
		out.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(sans)},
			ValidationContextSdsSecretConfig: sdsSecret(trust),
		}}
	}
	return out
}

// providerTLSContext is sdsTLSContext for proxyless gRPC: certificates come
// from the GRPCCertProvider instance.
func providerTLSContext(cert, trust string, sans []string) *tlsv3.CommonTlsContext {
	out := &tlsv3.CommonTlsContext{}
	if cert != "" {
		out.TlsCertificateProviderInstance = &tlsv3.CertificateProviderPluginInstance{InstanceName: GRPCCertProvider, CertificateName: cert}
	}
	if trust != "" {
		out.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: GRPCCertProvider, CertificateName: trust},
			MatchTypedSubjectAltNames:     sanMatchers(sans),
		}}
	}
	return out
}

// downstreamTLS creates a listener's TLS transport socket from t; an xDS
// gRPC server reads certificates from its certificate providers.
func downstreamTLS(t *model.DownstreamTLS, p model.Protocol, grpcServer bool) (*corev3.TransportSocket, error) {
	common := sdsTLSContext(t.CertSecret, t.TrustSecret, t.MatchSANs)
	if grpcServer {
		common = providerTLSContext(t.CertSecret, t.TrustSecret, nil)
	}
	common.AlpnProtocols = alpn(p)
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: common}
	if t.RequireClientCert {
		ctx.RequireClientCertificate = wrapperspb.Bool(true)
	}
	return transportSocket(ctx)
}

// upstreamTLS creates a cluster's TLS transport socket from t.
func upstreamTLS(t *model.UpstreamTLS, proxyless bool) (*corev3.TransportSocket, error) {
	common := sdsTLSContext(t.CertSecret, t.TrustSecret, t.MatchSANs)
	if proxyless {
		common = providerTLSContext(t.CertSecret, t.TrustSecret, t.MatchSANs)
	}
	return transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: t.SNI})
}

// alpn offers HTTP/2 only for gRPC, and both versions otherwise.
func alpn(p model.Protocol) []string {
	if p == model.ProtocolGRPC {
		return []string{"h2"}
	}
	return []string{"h2", "http/1.1"}
}

// transportSocket wraps a TLS context.
func transportSocket(ctx proto.Message) (*corev3.TransportSocket, error) {
	packed, err := anyOf(ctx)
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{Name: wellknown.TransportSocketTLS, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: packed}}, nil
}
