package vaulttest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/maestro-ml/maestro/certs/vault/vaulttest"
)

// clock is a settable time source for the server.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const spiffeID = "spiffe://cluster.local/ns/default/sa/frontend"

func newServer(t *testing.T) (*vaulttest.Server, *clock) {
	t.Helper()
	clk := &clock{now: time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)}
	s, err := vaulttest.New(vaulttest.Config{
		Now: clk.Now,
		Roles: map[string]vaulttest.Role{
			"mesh":   {AllowedURISANs: []string{"spiffe://cluster.local/*"}, TTL: time.Hour, MaxTTL: 24 * time.Hour},
			"strict": {AllowedURISANs: []string{"spiffe://cluster.local/*"}, RequireCN: true, AllowedDomains: []string{"svc.local"}},
		},
		AppRoles: map[string]vaulttest.AppRole{
			"maestro": {RoleID: "role-1", SecretID: "secret-1", Policies: []string{"maestro-pki"}, TokenTTL: 20 * time.Minute, TokenMaxTTL: time.Hour},
		},
		KubernetesRoles: map[string]vaulttest.KubernetesRole{
			"maestro": {BoundServiceAccountNames: []string{"maestro"}, BoundServiceAccountNamespaces: []string{"maestro-system"},
				Policies: []string{"maestro-pki"}, TokenTTL: time.Hour},
		},
		ServiceAccounts: map[string]vaulttest.ServiceAccount{
			"jwt-maestro": {Name: "maestro", Namespace: "maestro-system"},
			"jwt-other":   {Name: "other", Namespace: "maestro-system"},
		},
		Policies: map[string][]string{"maestro-pki": {"pki/issue/mesh", "pki/sign/*"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, clk
}

func newClient(t *testing.T, s *vaulttest.Server, token string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr()
	cfg.MaxRetries = 0
	cfg.Timeout = 5 * time.Second
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// respErr asserts err is a Vault API error with code and a message
// containing want.
func respErr(t *testing.T, err error, code int, want string) {
	t.Helper()
	var re *api.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a *api.ResponseError %d", err, code)
	}
	if re.StatusCode != code || re.RawError || !strings.Contains(strings.Join(re.Errors, "\n"), want) {
		t.Fatalf("got %d %q (raw %v), want %d containing %q", re.StatusCode, re.Errors, re.RawError, code, want)
	}
}

func TestHealthStatusCodes(t *testing.T) {
	s, _ := newServer(t)
	c := newClient(t, s, "")
	ctx := context.Background()
	code := func(params map[string][]string) int {
		t.Helper()
		resp, err := c.Logical().ReadRawWithDataWithContext(ctx, "sys/health", params)
		if resp == nil {
			t.Fatalf("no response: %v", err)
		}
		defer resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name             string
		uninit           bool
		sealed, standby  bool
		perf             bool
		params           map[string][]string
		want             int
		wantSealed, wSby bool
	}{
		{name: "active", want: 200},
		{name: "standby", standby: true, want: 429, wSby: true},
		{name: "standby ok", standby: true, params: map[string][]string{"standbyok": {"true"}}, want: 200, wSby: true},
		{name: "standby code", standby: true, params: map[string][]string{"standbycode": {"299"}}, want: 299, wSby: true},
		{name: "performance standby", standby: true, perf: true, want: 473, wSby: true},
		{name: "perf standby ok", standby: true, perf: true, params: map[string][]string{"perfstandbyok": {"true"}}, want: 200, wSby: true},
		{name: "sealed", sealed: true, want: 503, wantSealed: true},
		{name: "sealed code", sealed: true, params: map[string][]string{"sealedcode": {"200"}}, want: 200, wantSealed: true},
		{name: "active code", params: map[string][]string{"activecode": {"204"}}, want: 204},
		{name: "not initialized", uninit: true, want: 501, wantSealed: true},
		{name: "uninit code", uninit: true, params: map[string][]string{"uninitcode": {"200"}}, want: 200, wantSealed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.SetUninitialized(tc.uninit)
			s.SetSealed(tc.sealed)
			s.SetStandby(tc.standby, tc.perf)
			if got := code(tc.params); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
			// The client's own Health() overrides the codes to parse the body.
			h, err := c.Sys().HealthWithContext(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if h.Initialized == tc.uninit || h.Sealed != tc.wantSealed || h.Standby != tc.wSby || h.PerformanceStandby != (tc.standby && tc.perf) {
				t.Fatalf("health body %+v", h)
			}
		})
	}
	s.SetUninitialized(false)
	s.SetSealed(false)
	s.SetStandby(false, false)
	if got := code(map[string][]string{"activecode": {"nope"}}); got != 400 {
		t.Fatalf("bad activecode: %d", got)
	}
}

func TestAppRoleLogin(t *testing.T) {
	s, _ := newServer(t)
	c := newClient(t, s, "")
	ctx := context.Background()
	secret, err := c.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": "role-1", "secret_id": "secret-1"})
	if err != nil {
		t.Fatal(err)
	}
	a := secret.Auth
	if a == nil || a.ClientToken == "" || a.LeaseDuration != 1200 || !a.Renewable || a.Metadata["role_name"] != "maestro" {
		t.Fatalf("auth block %+v", a)
	}
	if strings.Join(a.Policies, ",") != "default,maestro-pki" || strings.Join(a.TokenPolicies, ",") != "default,maestro-pki" {
		t.Fatalf("policies %v", a.Policies)
	}
	for name, body := range map[string]map[string]any{
		"wrong secret":  {"role_id": "role-1", "secret_id": "nope"},
		"unknown role":  {"role_id": "nope", "secret_id": "secret-1"},
		"no secret":     {"role_id": "role-1"},
		"missing role":  {"secret_id": "secret-1"},
		"non-string id": {"role_id": 5, "secret_id": "secret-1"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Logical().WriteWithContext(ctx, "auth/approle/login", body)
			want := "invalid role or secret ID"
			switch name {
			case "missing role":
				want = "missing role_id"
			case "non-string id":
				want = "role_id: expected a string"
			}
			respErr(t, err, 400, want)
		})
	}
}

func TestKubernetesLogin(t *testing.T) {
	s, _ := newServer(t)
	c := newClient(t, s, "")
	ctx := context.Background()
	secret, err := c.Logical().WriteWithContext(ctx, "auth/kubernetes/login", map[string]any{"role": "maestro", "jwt": "jwt-maestro"})
	if err != nil {
		t.Fatal(err)
	}
	if secret.Auth == nil || secret.Auth.Metadata["service_account_namespace"] != "maestro-system" || secret.Auth.LeaseDuration != 3600 {
		t.Fatalf("auth %+v", secret.Auth)
	}
	tests := map[string]struct {
		body map[string]any
		code int
		want string
	}{
		"unknown jwt":    {map[string]any{"role": "maestro", "jwt": "forged"}, 403, "permission denied"},
		"unbound sa":     {map[string]any{"role": "maestro", "jwt": "jwt-other"}, 403, "service account name not authorized"},
		"unknown role":   {map[string]any{"role": "nope", "jwt": "jwt-maestro"}, 400, `invalid role name "nope"`},
		"missing jwt":    {map[string]any{"role": "maestro"}, 400, "missing jwt"},
		"missing role":   {map[string]any{"jwt": "jwt-maestro"}, 400, "missing role"},
		"malformed json": {nil, 0, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.body == nil {
				_, err := c.Logical().WriteBytesWithContext(ctx, "auth/kubernetes/login", []byte("{"))
				respErr(t, err, 400, "failed to parse JSON input")
				return
			}
			_, err := c.Logical().WriteWithContext(ctx, "auth/kubernetes/login", tc.body)
			respErr(t, err, tc.code, tc.want)
		})
	}
}

func TestTokenLookupRenewAndExpiry(t *testing.T) {
	s, clk := newServer(t)
	ctx := context.Background()
	tok := s.NewToken(vaulttest.TokenSpec{Policies: []string{"maestro-pki"}, TTL: 10 * time.Minute, MaxTTL: 25 * time.Minute, Renewable: true})
	c := newClient(t, s, tok)

	self, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ttl, _ := self.TokenTTL(); ttl != 10*time.Minute {
		t.Fatalf("ttl %v", ttl)
	}
	if ok, _ := self.TokenIsRenewable(); !ok {
		t.Fatal("not renewable")
	}
	if id, _ := self.TokenID(); id != tok {
		t.Fatalf("id %q", id)
	}

	clk.Advance(4 * time.Minute)
	self, _ = c.Auth().Token().LookupSelfWithContext(ctx)
	if ttl, _ := self.TokenTTL(); ttl != 6*time.Minute {
		t.Fatalf("ttl after 4m: %v", ttl)
	}

	renewed, err := c.Auth().Token().RenewSelfWithContext(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Auth.LeaseDuration != 600 || len(renewed.Warnings) != 0 {
		t.Fatalf("renew: %+v warnings %v", renewed.Auth, renewed.Warnings)
	}
	// Past the max TTL a renewal is capped, with Vault's warning.
	clk.Advance(9 * time.Minute)
	renewed, err = c.Auth().Token().RenewTokenAsSelfWithContext(ctx, tok, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Auth.LeaseDuration != 12*60 || len(renewed.Warnings) != 1 || !strings.Contains(renewed.Warnings[0], "capped") {
		t.Fatalf("capped renew: lease %d warnings %v", renewed.Auth.LeaseDuration, renewed.Warnings)
	}

	clk.Advance(12 * time.Minute)
	_, err = c.Auth().Token().LookupSelfWithContext(ctx)
	respErr(t, err, 403, "permission denied")
	_, err = c.Auth().Token().RenewSelfWithContext(ctx, 0)
	respErr(t, err, 403, "permission denied")

	bad := newClient(t, s, "hvs.bogus")
	_, err = bad.Auth().Token().LookupSelfWithContext(ctx)
	respErr(t, err, 403, "permission denied")

	fixed := newClient(t, s, s.NewToken(vaulttest.TokenSpec{Policies: []string{"root"}}))
	_, err = fixed.Auth().Token().RenewSelfWithContext(ctx, 0)
	respErr(t, err, 400, "lease is not renewable")
}

func parseCert(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		t.Fatalf("not PEM: %q", s)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// verifyLeaf checks leaf against the server's ca_chain, read as a client would.
func verifyLeaf(t *testing.T, c *api.Client, leaf *x509.Certificate) {
	t.Helper()
	resp, err := c.Logical().ReadRawWithContext(context.Background(), "pki/ca_chain")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	n := 0
	for rest := body; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if cert.CheckSignatureFrom(cert) == nil {
			roots.AddCert(cert)
		} else {
			inters.AddCert(cert)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("ca_chain has %d certificates, want intermediate and root", n)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: leaf.NotBefore.Add(time.Minute), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("leaf does not verify against ca_chain: %v", err)
	}
}

func TestPKIIssue(t *testing.T) {
	s, clk := newServer(t)
	ctx := context.Background()
	c := newClient(t, s, s.NewToken(vaulttest.TokenSpec{Policies: []string{"maestro-pki"}}))

	secret, err := c.Logical().WriteWithContext(ctx, "pki/issue/mesh", map[string]any{"uri_sans": spiffeID, "ttl": "2h", "private_key_format": "pkcs8"})
	if err != nil {
		t.Fatal(err)
	}
	d := secret.Data
	leaf := parseCert(t, d["certificate"].(string))
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != spiffeID {
		t.Fatalf("URIs %v", leaf.URIs)
	}
	now := clk.Now()
	if !leaf.NotAfter.Equal(now.Add(2*time.Hour)) || !leaf.NotBefore.Equal(now.Add(-30*time.Second)) {
		t.Fatalf("validity %v - %v", leaf.NotBefore, leaf.NotAfter)
	}
	if exp, _ := d["expiration"].(interface{ Int64() (int64, error) }); exp == nil {
		t.Fatalf("expiration %T", d["expiration"])
	} else if v, _ := exp.Int64(); v != leaf.NotAfter.Unix() {
		t.Fatalf("expiration %d, want %d", v, leaf.NotAfter.Unix())
	}
	if d["private_key_type"] != "ec" || !strings.HasPrefix(d["private_key"].(string), "-----BEGIN PRIVATE KEY-----") {
		t.Fatalf("key type %v", d["private_key_type"])
	}
	if chain, _ := d["ca_chain"].([]any); len(chain) != 2 || d["issuing_ca"] != chain[0] {
		t.Fatalf("ca_chain %v", d["ca_chain"])
	}
	if sn, _ := d["serial_number"].(string); !strings.Contains(sn, ":") {
		t.Fatalf("serial %q, want colon hex", sn)
	}
	verifyLeaf(t, c, leaf)

	// Default and native key formats.
	secret, err = c.Logical().WriteWithContext(ctx, "pki/issue/mesh", map[string]any{"uri_sans": spiffeID})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret.Data["private_key"].(string), "-----BEGIN EC PRIVATE KEY-----") {
		t.Fatal("default key format is not SEC 1")
	}
	if got := parseCert(t, secret.Data["certificate"].(string)); !got.NotAfter.Equal(now.Add(time.Hour)) {
		t.Fatalf("role default TTL not applied: %v", got.NotAfter)
	}

	// Capping at the role's max_ttl, reported as a warning.
	secret, err = c.Logical().WriteWithContext(ctx, "pki/issue/mesh", map[string]any{"uri_sans": spiffeID, "ttl": 72 * 3600})
	if err != nil {
		t.Fatal(err)
	}
	if got := parseCert(t, secret.Data["certificate"].(string)); !got.NotAfter.Equal(now.Add(24 * time.Hour)) {
		t.Fatalf("capped NotAfter %v", got.NotAfter)
	}
	if len(secret.Warnings) != 1 || !strings.Contains(secret.Warnings[0], "maxTTL") {
		t.Fatalf("warnings %v", secret.Warnings)
	}

	tests := map[string]struct {
		path string
		body map[string]any
		code int
		want string
	}{
		"uri not allowed":    {"pki/issue/mesh", map[string]any{"uri_sans": "spiffe://evil/ns/a/sa/b"}, 400, "URI Subject Alternative Names spiffe://evil/ns/a/sa/b not allowed by this role"},
		"bad ip san":         {"pki/issue/mesh", map[string]any{"uri_sans": spiffeID, "ip_sans": "not-an-ip"}, 400, `the value "not-an-ip" is not a valid IP address`},
		"unknown role":       {"pki/issue/nope", map[string]any{"uri_sans": spiffeID}, 403, "permission denied"},
		"bad ttl":            {"pki/issue/mesh", map[string]any{"uri_sans": spiffeID, "ttl": "soon"}, 400, "invalid duration"},
		"beyond CA expiry":   {"pki/issue/mesh", map[string]any{"uri_sans": spiffeID, "ttl": "1h"}, 0, ""},
		"cn required":        {"pki/sign/strict", map[string]any{"csr": csrPEM(t, spiffeID)}, 400, "the common_name field is required"},
		"cn not allowed":     {"pki/sign/strict", map[string]any{"csr": csrPEM(t, spiffeID), "common_name": "evil.com"}, 400, "common name evil.com not allowed by this role"},
		"unsupported path":   {"pki/roles/mesh", map[string]any{}, 404, "unsupported path"},
		"unsupported format": {"pki/issue/mesh", map[string]any{"uri_sans": spiffeID, "format": "der"}, 400, "unsupported format"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.code == 0 {
				return // covered in TestPKIRoleMaxBeyondCA
			}
			_, err := c.Logical().WriteWithContext(ctx, tc.path, tc.body)
			respErr(t, err, tc.code, tc.want)
		})
	}

	root := newClient(t, s, s.NewToken(vaulttest.TokenSpec{Policies: []string{"root"}}))
	_, err = root.Logical().WriteWithContext(ctx, "pki/issue/nope", map[string]any{"uri_sans": spiffeID})
	respErr(t, err, 400, "unknown role: nope")

	noToken := newClient(t, s, "")
	_, err = noToken.Logical().WriteWithContext(ctx, "pki/issue/mesh", map[string]any{"uri_sans": spiffeID})
	respErr(t, err, 403, "permission denied")
}

func csrPEM(t *testing.T, uri string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(uri)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestPKISign(t *testing.T) {
	s, _ := newServer(t)
	ctx := context.Background()
	c := newClient(t, s, s.NewToken(vaulttest.TokenSpec{Policies: []string{"maestro-pki"}}))
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(spiffeID)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	secret, err := c.Logical().WriteWithContext(ctx, "pki/sign/mesh", map[string]any{"csr": csr, "uri_sans": spiffeID, "ttl": "30m"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := secret.Data["private_key"]; ok {
		t.Fatal("sign returned a private key")
	}
	leaf := parseCert(t, secret.Data["certificate"].(string))
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Fatal("signed certificate is not for the CSR's key")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != spiffeID {
		t.Fatalf("URIs %v", leaf.URIs)
	}
	verifyLeaf(t, c, leaf)

	_, err = c.Logical().WriteWithContext(ctx, "pki/sign/mesh", map[string]any{"csr": ""})
	respErr(t, err, 400, `"csr" is empty`)
	_, err = c.Logical().WriteWithContext(ctx, "pki/sign/mesh", map[string]any{"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"})
	respErr(t, err, 400, "certificate request could not be parsed")
	_, err = c.Logical().WriteWithContext(ctx, "pki/sign/mesh", map[string]any{"csr": csrPEM(t, "spiffe://other.domain/ns/a/sa/b")})
	respErr(t, err, 400, "not allowed by this role")
}

func TestPKIReadCA(t *testing.T) {
	s, _ := newServer(t)
	ctx := context.Background()
	c := newClient(t, s, "")
	secret, err := c.Logical().ReadWithContext(ctx, "pki/cert/ca")
	if err != nil {
		t.Fatal(err)
	}
	inter := parseCert(t, secret.Data["certificate"].(string))
	root := parseCert(t, string(s.RootPEM()))
	if err := inter.CheckSignatureFrom(root); err != nil {
		t.Fatalf("pki/cert/ca is not the issuing intermediate: %v", err)
	}
	resp, err := c.Logical().ReadRawWithContext(ctx, "pki/ca_chain")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.HasSuffix(string(body), string(s.RootPEM())) || !strings.HasPrefix(string(body), secret.Data["certificate"].(string)) {
		t.Fatal("ca_chain is not issuing CA then root")
	}
	if ct := resp.Header.Get("Content-Type"); ct == "application/json" {
		t.Fatalf("ca_chain is a bare endpoint, got %s", ct)
	}
}

func TestOutages(t *testing.T) {
	s, _ := newServer(t)
	c := newClient(t, s, s.NewToken(vaulttest.TokenSpec{Policies: []string{"maestro-pki"}}))
	issue := func(ctx context.Context) error {
		_, err := c.Logical().WriteWithContext(ctx, "pki/issue/mesh", map[string]any{"uri_sans": spiffeID})
		return err
	}
	ctx := context.Background()

	s.SetSealed(true)
	respErr(t, issue(ctx), 503, "Vault is sealed")
	s.SetSealed(false)

	for _, code := range []int{500, 502} {
		s.SetFailure(code)
		respErr(t, issue(ctx), code, "internal error")
	}
	s.SetFailure(0)

	s.SetDown(true)
	err := issue(ctx)
	var re *api.ResponseError
	if err == nil || errors.As(err, &re) {
		t.Fatalf("down: %v, want a transport error", err)
	}
	s.SetDown(false)

	s.SetLatency(300 * time.Millisecond)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := issue(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow vault: %v, want deadline exceeded", err)
	}
	s.SetLatency(0)
	if err := issue(ctx); err != nil {
		t.Fatalf("after outages: %v", err)
	}
	if n := s.Count("pki/issue/mesh"); n != 5 {
		t.Fatalf("count %d, want 5 (sealed, 500, 502, slow, ok)", n)
	}
}
