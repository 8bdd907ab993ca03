package xdsconfig

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

func convertUpstreamTLS(ts *corev3.TransportSocket) (*UpstreamTLS, error) {
	u := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(u); err != nil {
		return nil, fieldErr("transport_socket.typed_config", "%v", err)
	}
	const p = "transport_socket.typed_config.common_tls_context"
	ctx := u.GetCommonTlsContext()
	out := &UpstreamTLS{}
	switch certs := ctx.GetTlsCertificateSdsSecretConfigs(); len(certs) {
	case 0:
	case 1:
		if err := checkADS(certs[0].GetSdsConfig(), p+".tls_certificate_sds_secret_configs[0].sds_config"); err != nil {
			return nil, err
		}
		out.CertSecret = certs[0].GetName()
	default:
		return nil, fieldErr(p+".tls_certificate_sds_secret_configs", "more than one unsupported")
	}
	cv := ctx.GetCombinedValidationContext()
	if cv == nil {
		return nil, fieldErr(p+".combined_validation_context", "is required: the gateway verifies every upstream")
	}
	if cv.GetDefaultValidationContext().GetTrustedCa() != nil {
		return nil, fieldErr(p+".combined_validation_context.default_validation_context.trusted_ca", "unsupported: the bundle comes from SDS")
	}
	if err := checkADS(cv.GetValidationContextSdsSecretConfig().GetSdsConfig(), p+".combined_validation_context.validation_context_sds_secret_config.sds_config"); err != nil {
		return nil, err
	}
	out.CASecret = cv.GetValidationContextSdsSecretConfig().GetName()
	for i, m := range cv.GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		mp := fmt.Sprintf("%s.combined_validation_context.default_validation_context.match_typed_subject_alt_names[%d]", p, i)
		if m.GetSanType() != tlsv3.SubjectAltNameMatcher_URI {
			return nil, fieldErr(mp+".san_type", "%v unsupported: only URI", m.GetSanType())
		}
		if m.GetMatcher().GetExact() == "" || m.GetMatcher().GetIgnoreCase() {
			return nil, fieldErr(mp+".matcher", "only a case-sensitive exact match is supported")
		}
		out.URISANs = append(out.URISANs, m.GetMatcher().GetExact())
	}
	return out, nil
}

func convertSecret(s *tlsv3.Secret) (*Secret, error) {
	out := &Secret{Name: s.GetName()}
	switch {
	case s.GetTlsCertificate() != nil:
		c := s.GetTlsCertificate()
		if c.GetCertificateChain().GetFilename() != "" || c.GetPrivateKey().GetFilename() != "" {
			return nil, fieldErr("tls_certificate", "filename unsupported: SDS secrets are inline")
		}
		out.CertChain, out.Key = c.GetCertificateChain().GetInlineBytes(), c.GetPrivateKey().GetInlineBytes()
		if len(out.CertChain) == 0 || len(out.Key) == 0 {
			return nil, fieldErr("tls_certificate", "needs inline_bytes certificate_chain and private_key")
		}
	case s.GetValidationContext() != nil:
		v := s.GetValidationContext()
		if len(v.GetMatchTypedSubjectAltNames()) > 0 {
			return nil, fieldErr("validation_context.match_typed_subject_alt_names", "unsupported in a secret")
		}
		if v.GetTrustedCa().GetFilename() != "" {
			return nil, fieldErr("validation_context.trusted_ca.filename", "unsupported: SDS secrets are inline")
		}
		if out.TrustedCA = v.GetTrustedCa().GetInlineBytes(); len(out.TrustedCA) == 0 {
			return nil, fieldErr("validation_context.trusted_ca", "needs inline_bytes")
		}
	default:
		return nil, fieldErr("(resource)", "needs tls_certificate or validation_context")
	}
	return out, nil
}
