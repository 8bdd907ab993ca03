package vault_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/clock/fakeclock"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/certs/vault"
	"github.com/maestro-ml/maestro/certs/vault/vaulttest"
	"github.com/maestro-ml/maestro/internal/syncbuf"
)

const (
	td        = "cluster.local"
	roleID    = "3c1f0e5e-role-id"
	secretID  = "7a9d2b41-super-secret-id"
	podJWT    = "eyJhbGciOi.fake-pod-jwt.sig"
	roleName  = "maestro-mesh"
	appRole   = "maestro"
	k8sRole   = "maestro"
	policyPKI = "maestro-pki"
)

var (
	start = time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	id    = spiffe.Must(td, "default", "frontend")
)

type env struct {
	srv   *vaulttest.Server
	clock *fakeclock.Clock
	logs  *syncbuf.Buffer
	root  string // a token that never expires
	// caFile verifies the server's TLS certificate, for a TLS server.
	caFile string
}

func newEnv(t *testing.T, now func() time.Time, appRoleTTL, appRoleMax time.Duration) *env {
	t.Helper()
	return newEnvTLS(t, now, appRoleTTL, appRoleMax, false)
}

// newEnvTLS is newEnv with, if tls, Vault served over HTTPS.
func newEnvTLS(t *testing.T, now func() time.Time, appRoleTTL, appRoleMax time.Duration, tls bool) *env {
	t.Helper()
	e := &env{logs: &syncbuf.Buffer{}}
	if now == nil {
		e.clock = fakeclock.New(start)
		now = e.clock.Now
	}
	srv, err := vaulttest.New(vaulttest.Config{
		Now: now,
		TLS: tls,
		Roles: map[string]vaulttest.Role{
			roleName: {AllowedURISANs: []string{"spiffe://" + td + "/*"}, MaxTTL: 24 * time.Hour},
		},
		AppRoles: map[string]vaulttest.AppRole{
			appRole: {RoleID: roleID, SecretID: secretID, Policies: []string{policyPKI}, TokenTTL: appRoleTTL, TokenMaxTTL: appRoleMax},
		},
		KubernetesRoles: map[string]vaulttest.KubernetesRole{
			k8sRole: {BoundServiceAccountNames: []string{"maestro"}, BoundServiceAccountNamespaces: []string{"maestro-system"},
				Policies: []string{policyPKI}, TokenTTL: time.Hour},
		},
		ServiceAccounts: map[string]vaulttest.ServiceAccount{podJWT: {Name: "maestro", Namespace: "maestro-system"}},
		Policies:        map[string][]string{policyPKI: {"pki/issue/" + roleName, "pki/sign/" + roleName}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	e.srv = srv
	if tls {
		e.caFile = filepath.Join(t.TempDir(), "vault-ca.pem")
		if err := os.WriteFile(e.caFile, srv.CACertPEM(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.root = srv.NewToken(vaulttest.TokenSpec{Policies: []string{policyPKI}})
	t.Cleanup(func() {
		logs := e.logs.String()
		for _, secret := range []string{secretID, podJWT, roleID, e.root} {
			if strings.Contains(logs, secret) {
				t.Errorf("a credential appears in the logs:\n%s", logs)
			}
		}
	})
	return e
}

func (e *env) issuer(t *testing.T, auth vault.Auth, mode vault.Mode) *vault.Issuer {
	t.Helper()
	cfg := vault.Config{
		Address: e.srv.Addr(),
		Role:    roleName,
		Mode:    mode,
		Auth:    auth,
		Timeout: 5 * time.Second,
		Logger:  slogJSON(e.logs),
		CACert:  e.caFile,
	}
	if e.clock != nil {
		cfg.Now = e.clock.Now
	}
	iss, err := vault.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// verify checks c's chain against b with the expected SPIFFE ID at a time
// inside its validity.
func verify(t *testing.T, c *certs.Certificate, b *certs.Bundle) {
	t.Helper()
	raw := make([][]byte, len(c.Chain))
	for i, x := range c.Chain {
		raw[i] = x.Raw
	}
	mid := c.NotBefore().Add(c.NotAfter().Sub(c.NotBefore()) / 2)
	got, err := spiffe.Verifier{Roots: b.Pool, Allow: spiffe.AllowIDs(c.ID), Now: func() time.Time { return mid }}.Verify(raw)
	if err != nil {
		t.Fatalf("leaf does not verify against the bundle: %v", err)
	}
	if got != id {
		t.Fatalf("verified %v, want %v", got, id)
	}
}

func TestIssueWithEachAuthMethodAndMode(t *testing.T) {
	dir := t.TempDir()
	jwtFile := filepath.Join(dir, "token")
	if err := os.WriteFile(jwtFile, []byte(podJWT+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_VAULT_SECRET_ID", secretID)
	for _, tc := range []struct {
		name string
		auth func(e *env) vault.Auth
		mode vault.Mode
	}{
		{"token sign", func(e *env) vault.Auth { return vault.TokenAuth{Token: vault.Secret{Value: e.root}} }, vault.ModeSign},
		{"token issue", func(e *env) vault.Auth { return vault.TokenAuth{Token: vault.Secret{Value: e.root}} }, vault.ModeIssue},
		{"approle from env", func(*env) vault.Auth {
			return vault.AppRoleAuth{RoleID: vault.Secret{Value: roleID}, SecretID: vault.Secret{Env: "TEST_VAULT_SECRET_ID"}}
		}, vault.ModeSign},
		{"approle issue", func(*env) vault.Auth {
			return vault.AppRoleAuth{RoleID: vault.Secret{Value: roleID}, SecretID: vault.Secret{Value: secretID}}
		}, vault.ModeIssue},
		{"kubernetes from file", func(*env) vault.Auth {
			return vault.KubernetesAuth{Role: k8sRole, JWT: vault.Secret{File: jwtFile}}
		}, vault.ModeSign},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil, time.Hour, 0)
			iss := e.issuer(t, tc.auth(e), tc.mode)
			ctx := context.Background()
			c, err := iss.Issue(ctx, certs.Request{ID: id, TTL: 2 * time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			b, err := iss.Bundle(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Roots) != 1 || !bytes.Contains(e.srv.RootPEM(), certs.EncodeCertificates(b.Roots)[:60]) {
				t.Fatal("bundle is not Vault's root")
			}
			verify(t, c, b)
			if len(c.Chain) != 2 {
				t.Fatalf("chain has %d certs, want leaf and intermediate (no root)", len(c.Chain))
			}
			if c.Capped || !c.NotAfter().Equal(start.Add(2*time.Hour)) {
				t.Fatalf("NotAfter %v capped %v", c.NotAfter(), c.Capped)
			}
			wantPath := "pki/" + string(tc.mode) + "/" + roleName
			if e.srv.Count(wantPath) != 1 {
				t.Fatalf("%s not called", wantPath)
			}
		})
	}
}

func TestBundleBeforeAnyIssue(t *testing.T) {
	e := newEnv(t, nil, time.Hour, 0)
	iss := e.issuer(t, vault.TokenAuth{Token: vault.Secret{Value: e.root}}, vault.ModeSign)
	b, err := iss.Bundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Roots) != 1 || string(b.PEM()) != string(e.srv.RootPEM()) {
		t.Fatal("bundle from pki/ca_chain is not the root")
	}
}

func TestCappedTTLIsReported(t *testing.T) {
	e := newEnv(t, nil, time.Hour, 0)
	iss := e.issuer(t, vault.TokenAuth{Token: vault.Secret{Value: e.root}}, vault.ModeSign)
	c, err := iss.Issue(context.Background(), certs.Request{ID: id, TTL: 72 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Capped || !c.NotAfter().Equal(start.Add(24*time.Hour)) || c.Requested != 72*time.Hour {
		t.Fatalf("capped %v NotAfter %v", c.Capped, c.NotAfter())
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "capped the certificate lifetime") || !strings.Contains(logs, "maxTTL") {
		t.Fatalf("capping not logged:\n%s", logs)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	e := newEnv(t, nil, time.Hour, 0)
	ctx := context.Background()
	good := e.issuer(t, vault.TokenAuth{Token: vault.Secret{Value: e.root}}, vault.ModeSign)
	if _, err := good.Issue(ctx, certs.Request{ID: id}); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		setup       func()
		issuer      *vault.Issuer
		req         certs.Request
		unavailable bool
		want        string
	}{
		"sealed":      {setup: func() { e.srv.SetSealed(true) }, issuer: good, req: certs.Request{ID: id}, unavailable: true, want: "Vault is sealed"},
		"5xx":         {setup: func() { e.srv.SetFailure(502) }, issuer: good, req: certs.Request{ID: id}, unavailable: true, want: "502"},
		"down":        {setup: func() { e.srv.SetDown(true) }, issuer: good, req: certs.Request{ID: id}, unavailable: true, want: "pki/sign/" + roleName},
		"uri refused": {issuer: good, req: certs.Request{ID: spiffe.Must("other.domain", "a", "b")}, want: "not allowed by this role"},
		"bad approle": {issuer: e.issuer(t, vault.AppRoleAuth{RoleID: vault.Secret{Value: roleID}, SecretID: vault.Secret{Value: "wrong"}}, vault.ModeSign), req: certs.Request{ID: id}, want: "invalid role or secret ID"},
		"missing env": {issuer: e.issuer(t, vault.AppRoleAuth{RoleID: vault.Secret{Value: roleID}, SecretID: vault.Secret{Env: "TEST_VAULT_NOT_SET"}}, vault.ModeSign), req: certs.Request{ID: id}, want: "environment variable TEST_VAULT_NOT_SET is not set"},
		"bad token":   {issuer: e.issuer(t, vault.TokenAuth{Token: vault.Secret{Value: "hvs.nope"}}, vault.ModeSign), req: certs.Request{ID: id}, want: "permission denied"},
		"invalid id":  {issuer: good, req: certs.Request{ID: spiffe.ID{TrustDomain: td}}, want: "empty namespace"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
				t.Cleanup(func() { e.srv.SetSealed(false); e.srv.SetFailure(0); e.srv.SetDown(false) })
			}
			_, err := tc.issuer.Issue(ctx, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if errors.Is(err, certs.ErrUnavailable) != tc.unavailable {
				t.Fatalf("errors.Is(err, ErrUnavailable) = %v, want %v (%v)", !tc.unavailable, tc.unavailable, err)
			}
		})
	}
	if _, err := good.Issue(ctx, certs.Request{ID: id}); err != nil {
		t.Fatalf("after outages: %v", err)
	}
}

func TestExpiredTokenLogsInAgain(t *testing.T) {
	e := newEnv(t, nil, time.Minute, time.Minute)
	iss := e.issuer(t, vault.AppRoleAuth{RoleID: vault.Secret{Value: roleID}, SecretID: vault.Secret{Value: secretID}}, vault.ModeSign)
	ctx := context.Background()
	if _, err := iss.Issue(ctx, certs.Request{ID: id}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute) // the token is now expired in Vault
	if _, err := iss.Issue(ctx, certs.Request{ID: id}); err != nil {
		t.Fatalf("issue with an expired token: %v", err)
	}
	if n := e.srv.Count("auth/approle/login"); n != 2 {
		t.Fatalf("%d logins, want 2", n)
	}
	if n := e.srv.Count("pki/sign/" + roleName); n != 3 {
		t.Fatalf("%d sign calls, want 3 (ok, refused, retried)", n)
	}
}

func TestRunRenewsTokenAndLogsInAgainAtMaxTTL(t *testing.T) {
	// The LifetimeWatcher runs on real time, so this test uses short real
	// lifetimes and waits on the server seeing the requests.
	e := newEnv(t, time.Now, 2*time.Second, 3*time.Second)
	events := make(chan string, 64)
	e.srv.OnRequest(func(_, path string) {
		select {
		case events <- path:
		default:
		}
	})
	iss := e.issuer(t, vault.AppRoleAuth{RoleID: vault.Secret{Value: roleID}, SecretID: vault.Secret{Value: secretID}}, vault.ModeSign)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- iss.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not stop")
		}
	})
	seen := map[string]int{}
	deadline := time.After(20 * time.Second)
	for seen["auth/token/renew-self"] < 1 || seen["auth/approle/login"] < 2 {
		select {
		case p := <-events:
			seen[p]++
		case <-deadline:
			t.Fatalf("after 20s: %v; want a renewal and a second login", seen)
		}
	}
	if iss.Renewals() < 1 {
		t.Fatalf("Renewals() = %d", iss.Renewals())
	}
	if _, err := iss.Issue(context.Background(), certs.Request{ID: id}); err != nil {
		t.Fatalf("issue after re-login: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	tok := vault.TokenAuth{Token: vault.Secret{Value: "x"}}
	tests := map[string]struct {
		cfg  vault.Config
		want string
	}{
		"no address": {vault.Config{Role: "r", Auth: tok}, "address is required"},
		"no role":    {vault.Config{Address: "http://127.0.0.1:1", Auth: tok}, "role is required"},
		"no auth":    {vault.Config{Address: "http://127.0.0.1:1", Role: "r"}, "auth method is required"},
		"bad mode":   {vault.Config{Address: "http://127.0.0.1:1", Role: "r", Auth: tok, Mode: "steal"}, `mode "steal"`},
		"bad ca":     {vault.Config{Address: "http://127.0.0.1:1", Role: "r", Auth: tok, CACert: "/nonexistent/ca.pem"}, "tls"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := vault.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := vault.Secret{Value: secretID}
	var buf bytes.Buffer
	l := slogJSON(&buf)
	l.Info("login", "secret", s, "auth", vault.AppRoleAuth{SecretID: s})
	for _, out := range []string{buf.String(), s.String(), s.GoString()} {
		if strings.Contains(out, secretID) {
			t.Fatalf("secret printed: %s", out)
		}
	}
	if _, err := (vault.Secret{}).Resolve(); !errors.Is(err, vault.ErrNoSecret) {
		t.Fatalf("unset secret: %v", err)
	}
	if _, err := (vault.Secret{File: "/nonexistent/secret"}).Resolve(); err == nil || !strings.Contains(err.Error(), "/nonexistent/secret") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestConcurrentRefusalsShareOneLogin(t *testing.T) {
	e := newEnv(t, nil, time.Minute, time.Minute)
	iss := e.issuer(t, vault.AppRoleAuth{RoleID: vault.Secret{Value: roleID}, SecretID: vault.Secret{Value: secretID}}, vault.ModeSign)
	ctx := context.Background()
	if _, err := iss.Issue(ctx, certs.Request{ID: id}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := iss.Issue(ctx, certs.Request{ID: id})
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := e.srv.Count("auth/approle/login"); n != 2 {
		t.Fatalf("%d logins for 8 concurrent refusals, want 1 more than the first", n)
	}
}

func TestExtraNamesReachTheCertificate(t *testing.T) {
	for _, mode := range []vault.Mode{vault.ModeSign, vault.ModeIssue} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t, nil, time.Hour, 2*time.Hour)
			iss := e.issuer(t, vault.TokenAuth{Token: vault.Secret{Value: e.root}}, mode)
			id := spiffe.Must(td, "maestro-system", "controlplane")
			c, err := iss.Issue(context.Background(), certs.Request{ID: id, TTL: time.Hour,
				Names: certs.Names{IPs: []net.IP{net.ParseIP("127.0.0.1")}}})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Chain[0].VerifyHostname("127.0.0.1"); err != nil {
				t.Errorf("the leaf does not name 127.0.0.1: %v", err)
			}
		})
	}
}
