package setup

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/maestro-ml/maestro/certs/localca"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/certs/vault"
	"github.com/maestro-ml/maestro/certs/vault/vaulttest"
)

func parse(t *testing.T, args ...string) Options {
	t.Helper()
	var o Options
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return o
}

// runUntilIssued starts r and waits until id has a certificate.
func runUntilIssued(t *testing.T, r *Running, id spiffe.ID) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
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
	snaps := r.Manager.Subscribe(ctx)
	r.Manager.SetIdentities([]spiffe.ID{id})
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-snaps:
			if s.Certs[id] != nil {
				return
			}
		case <-timeout:
			t.Fatalf("no certificate for %s", id)
		}
	}
}

func TestDefaultsAreTheBuiltInCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	o := parse(t, "--ca-dir", dir, "--trust-domain", "example.org", "--cert-ttl", "10m")
	r, err := o.Start(Deps{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "localca" {
		t.Fatalf("issuer %q", r.Name)
	}
	if _, ok := r.Issuer.(*localca.CA); !ok {
		t.Fatalf("issuer %T", r.Issuer)
	}
	id := spiffe.Must("example.org", "ns", "sa")
	runUntilIssued(t, r, id)
	c, _ := r.Manager.Certificate(id)
	if got := c.NotAfter().Sub(c.NotBefore()); got < 10*time.Minute || got > 12*time.Minute {
		t.Fatalf("lifetime %v, want about the 10m asked", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "root-key.pem")); err != nil {
		t.Fatalf("state dir not used: %v", err)
	}
}

func TestVaultFromFlags(t *testing.T) {
	srv, err := vaulttest.New(vaulttest.Config{
		Roles:    map[string]vaulttest.Role{"maestro-mesh": {AllowedURISANs: []string{"spiffe://cluster.local/*"}}},
		AppRoles: map[string]vaulttest.AppRole{"m": {RoleID: "rid", SecretID: "sid", Policies: []string{"pki"}, TokenTTL: time.Hour}},
		Policies: map[string][]string{"pki": {"pki/sign/maestro-mesh"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretFile, []byte("sid\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_ROLE_ID", "rid")
	o := parse(t, "--ca", "vault", "--trust-domain", "cluster.local", "--vault-addr", srv.Addr(), "--vault-auth", "approle",
		"--vault-role-id-env", "TEST_ROLE_ID", "--vault-secret-id-file", secretFile)
	r, err := o.Start(Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Issuer.(*vault.Issuer); !ok || r.Name != "vault" {
		t.Fatalf("issuer %T %q", r.Issuer, r.Name)
	}
	runUntilIssued(t, r, spiffe.Must("cluster.local", "default", "web"))
	if srv.Count("auth/approle/login") < 1 || srv.Count("pki/sign/maestro-mesh") < 1 {
		t.Fatal("vault not used")
	}
}

func TestOptionErrors(t *testing.T) {
	t.Setenv("VAULT_ADDR", "")
	tests := map[string]struct {
		args []string
		want string
	}{
		"unknown issuer":   {[]string{"--ca", "acme"}, `--ca "acme": want local or vault`},
		"vault no address": {[]string{"--ca", "vault"}, "--vault-addr (or VAULT_ADDR) is required"},
		"bad auth":         {[]string{"--ca", "vault", "--vault-addr", "http://127.0.0.1:1", "--vault-auth", "ldap"}, `--vault-auth "ldap"`},
		"bad mode":         {[]string{"--ca", "vault", "--vault-addr", "http://127.0.0.1:1", "--vault-pki-mode", "x"}, `mode "x"`},
		"no k8s role":      {[]string{"--ca", "vault", "--vault-addr", "http://127.0.0.1:1", "--vault-auth", "kubernetes", "--vault-k8s-role", ""}, "--vault-k8s-role is required"},
		"no trust domain":  {[]string{"--trust-domain", "", "--ca-dir", ""}, "--trust-domain is required"},
		"bad fraction":     {[]string{"--ca-dir", "", "--cert-renew-at", "1.5"}, "renew fraction"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parse(t, tc.args...).Start(Deps{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
