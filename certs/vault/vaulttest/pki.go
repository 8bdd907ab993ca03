package vaulttest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// Role is a PKI role. Unlike Vault, whose roles default to require_cn=true
// and RSA keys, the zero Role requires no common name and uses EC P-256:
// what a SPIFFE role looks like.
type Role struct {
	// AllowedURISANs are glob patterns ('*' matches anything) for URI SANs,
	// e.g. "spiffe://cluster.local/*".
	AllowedURISANs []string
	// RequireCN rejects requests without a common name. AllowAnyName lets
	// any common name through; otherwise a common name must be in
	// AllowedDomains exactly.
	RequireCN      bool
	AllowAnyName   bool
	AllowedDomains []string
	// TTL is the default lifetime; MaxTTL caps requests (zero: the
	// mount's 768h).
	TTL, MaxTTL time.Duration
	// KeyType is "ec" (default, P-256), "rsa" (2048) or "any" (sign only).
	KeyType string
	// DenyIPSANs is Vault's allow_ip_sans=false; Vault allows IP SANs by
	// default.
	DenyIPSANs bool
}

// mountMaxTTL is Vault's default max_lease_ttl (32 days).
const mountMaxTTL = 768 * time.Hour

// notBeforeSkew is Vault's default not_before_duration.
const notBeforeSkew = 30 * time.Second

// pki is the mount's CA: a root and the intermediate that issues, as a
// mount with an imported chain has.
type pki struct {
	now      func() time.Time
	root     *x509.Certificate
	inter    *x509.Certificate
	interKey crypto.Signer
}

func newPKI(now func() time.Time) (*pki, error) {
	start := now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	root, err := makeCA("vaulttest root", start, 10*365*24*time.Hour, nil, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	inter, err := makeCA("vaulttest intermediate", start, 5*365*24*time.Hour, root, &interKey.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("intermediate: %w", err)
	}
	return &pki{now: now, root: root, inter: inter, interKey: interKey}, nil
}

func makeCA(cn string, now time.Time, ttl time.Duration, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-notBeforeSkew),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func encodePEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

func (p *pki) rootPEM() []byte { return []byte(encodePEM(p.root)) }

// chainPEM is the bare body of GET pki/ca_chain: the issuing CA, then its
// parents.
func (p *pki) chainPEM() []byte {
	var b bytes.Buffer
	b.WriteString(encodePEM(p.inter))
	b.WriteString(encodePEM(p.root))
	return b.Bytes()
}

func (p *pki) certCA() *response {
	return &response{Data: map[string]any{
		"certificate":             encodePEM(p.inter),
		"ca_chain":                []string{encodePEM(p.inter), encodePEM(p.root)},
		"issuer_id":               "6a4ce2a4-0e35-4b41-9c5a-1ed6f6d3d6e1",
		"revocation_time":         0,
		"revocation_time_rfc3339": "",
	}}
}

// issue implements pki/issue/:role (Vault makes the key) and, with sign,
// pki/sign/:role (the caller's CSR supplies it).
func (s *Server) issue(roleName string, body map[string]any, sign bool) (any, int, error) {
	role, ok := s.cfg.Roles[roleName]
	if !ok || roleName == "" {
		return nil, 0, errorf(http.StatusBadRequest, "unknown role: %s", roleName)
	}
	params := map[string]string{}
	for _, name := range []string{"common_name", "alt_names", "ip_sans", "uri_sans", "format", "private_key_format", "csr"} {
		v, err := stringParam(body, name)
		if err != nil {
			return nil, 0, err
		}
		params[name] = v
	}
	ttl, err := durationParam(body, "ttl")
	if err != nil {
		return nil, 0, err
	}
	if f := params["format"]; f != "" && f != "pem" {
		return nil, 0, errorf(http.StatusBadRequest, "unsupported format %q in this test server (only pem)", f)
	}
	keyType := role.KeyType
	if keyType == "" {
		keyType = "ec"
	}

	var (
		pub     crypto.PublicKey
		key     crypto.Signer
		csrURIs []*url.URL
		csrCN   string
	)
	if sign {
		csr, err := parseCSR(params["csr"])
		if err != nil {
			return nil, 0, err
		}
		if err := checkKeyType(keyType, csr.PublicKey); err != nil {
			return nil, 0, err
		}
		pub, csrURIs, csrCN = csr.PublicKey, csr.URIs, csr.Subject.CommonName
	} else {
		if keyType == "any" {
			return nil, 0, errorf(http.StatusBadRequest, "role key type \"any\" not allowed for issuing certificates, only signing")
		}
		if key, err = generateKey(keyType); err != nil {
			return nil, 0, err
		}
		pub = key.Public()
	}

	cn := params["common_name"]
	if cn == "" {
		cn = csrCN
	}
	if cn == "" && role.RequireCN {
		return nil, 0, errorf(http.StatusBadRequest, "the common_name field is required, or must be provided in a CSR with \"use_csr_common_name\" set to true, unless \"require_cn\" is set to false")
	}
	if cn != "" && !role.AllowAnyName && !contains(role.AllowedDomains, cn) {
		return nil, 0, errorf(http.StatusBadRequest, "common name %s not allowed by this role", cn)
	}
	var dns []string
	for _, n := range splitList(params["alt_names"]) {
		if !role.AllowAnyName && !contains(role.AllowedDomains, n) {
			return nil, 0, errorf(http.StatusBadRequest, "subject alternate name %s not allowed by this role", n)
		}
		dns = append(dns, n)
	}
	var ips []net.IP
	for _, v := range splitList(params["ip_sans"]) {
		ip := net.ParseIP(v)
		if ip == nil {
			return nil, 0, errorf(http.StatusBadRequest, "the value %q is not a valid IP address", v)
		}
		if role.DenyIPSANs {
			return nil, 0, errorf(http.StatusBadRequest, "IP Subject Alternative Names are not allowed in this role, but was provided %s", v)
		}
		ips = append(ips, ip)
	}
	uris := csrURIs
	for _, u := range splitList(params["uri_sans"]) {
		parsed, err := url.Parse(u)
		if err != nil {
			return nil, 0, errorf(http.StatusBadRequest, "error parsing URI SAN %q: %v", u, err)
		}
		if !containsURL(uris, parsed) {
			uris = append(uris, parsed)
		}
	}
	for _, u := range uris {
		if !globMatch(role.AllowedURISANs, u.String()) {
			return nil, 0, errorf(http.StatusBadRequest, "URI Subject Alternative Names %s not allowed by this role", u)
		}
	}

	ca := s.currentPKI()
	now := s.now()
	var warnings []string
	if ttl <= 0 {
		ttl = role.TTL
	}
	maxTTL := role.MaxTTL
	if maxTTL <= 0 {
		maxTTL = mountMaxTTL
	}
	if ttl <= 0 {
		ttl = maxTTL
	}
	if ttl > maxTTL {
		warnings = append(warnings, fmt.Sprintf("TTL %q is longer than permitted maxTTL %q, so using maxTTL", ttl.String(), maxTTL.String()))
		ttl = maxTTL
	}
	notAfter := now.Add(ttl)
	if notAfter.After(ca.inter.NotAfter) {
		return nil, 0, errorf(http.StatusBadRequest, "cannot satisfy request, as TTL would result in notAfter of %s that is beyond the expiration of the CA certificate at %s",
			notAfter.UTC().Format(time.RFC3339Nano), ca.inter.NotAfter.UTC().Format(time.RFC3339Nano))
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 160))
	if err != nil {
		return nil, 0, err
	}
	if cn != "" && !contains(dns, cn) {
		dns = append([]string{cn}, dns...)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-notBeforeSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
		URIs:                  uris,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.inter, pub, ca.interKey)
	if err != nil {
		return nil, 0, errorf(http.StatusInternalServerError, "unable to create certificate: %v", err)
	}
	data := map[string]any{
		"certificate":   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		"issuing_ca":    encodePEM(ca.inter),
		"ca_chain":      []string{encodePEM(ca.inter), encodePEM(ca.root)},
		"serial_number": colonHex(serial.Bytes()),
		"expiration":    notAfter.Unix(),
	}
	if !sign {
		keyPEM, keyTypeName, err := encodeKey(key, params["private_key_format"])
		if err != nil {
			return nil, 0, err
		}
		data["private_key"], data["private_key_type"] = keyPEM, keyTypeName
	}
	return &response{Data: data, Warnings: warnings}, http.StatusOK, nil
}

func parseCSR(s string) (*x509.CertificateRequest, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errorf(http.StatusBadRequest, "\"csr\" is empty")
	}
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, errorf(http.StatusBadRequest, "csr contains no data")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "certificate request could not be parsed: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, errorf(http.StatusBadRequest, "request signature invalid: %v", err)
	}
	return csr, nil
}

func checkKeyType(want string, pub crypto.PublicKey) error {
	switch pub.(type) {
	case *ecdsa.PublicKey:
		if want == "ec" || want == "any" {
			return nil
		}
	case *rsa.PublicKey:
		if want == "rsa" || want == "any" {
			return nil
		}
	}
	return errorf(http.StatusBadRequest, "role requires keys of type %s", want)
}

func generateKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "ec":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, errorf(http.StatusBadRequest, "unsupported key type %q", keyType)
}

// encodeKey follows private_key_format: "" or "der" give the key's native
// PEM form (SEC 1 for EC, PKCS#1 for RSA), "pkcs8" gives PKCS#8.
func encodeKey(key crypto.Signer, format string) (string, string, error) {
	typeName := "ec"
	if _, ok := key.(*rsa.PrivateKey); ok {
		typeName = "rsa"
	}
	var block *pem.Block
	switch format {
	case "", "der", "pem":
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			der, err := x509.MarshalECPrivateKey(k)
			if err != nil {
				return "", "", err
			}
			block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
		case *rsa.PrivateKey:
			block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
		}
	case "pkcs8":
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return "", "", err
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	default:
		return "", "", errorf(http.StatusBadRequest, "invalid private_key_format %q", format)
	}
	return string(pem.EncodeToMemory(block)), typeName, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func containsURL(list []*url.URL, u *url.URL) bool {
	for _, x := range list {
		if x.String() == u.String() {
			return true
		}
	}
	return false
}

// globMatch matches '*' anywhere in a pattern, like Vault's allowed_uri_sans.
func globMatch(patterns []string, v string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(strings.ReplaceAll(p, "/", "\x00"), strings.ReplaceAll(v, "/", "\x00")); err == nil && ok {
			return true
		}
	}
	return false
}

func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02x", c)
	}
	return strings.Join(parts, ":")
}
