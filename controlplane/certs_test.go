package controlplane

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/certs/setup"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

func TestSetupOptionsFromPolicy(t *testing.T) {
	vault := func(a policy.VaultAuth) policy.MeshSpec {
		return policy.MeshSpec{TrustDomain: "td", CA: policy.CA{Issuer: policy.IssuerVault,
			Vault: &policy.VaultCA{Address: "https://vault:8200", Role: "mesh", Auth: a}}}
	}
	for _, tc := range []struct {
		name    string
		spec    policy.MeshSpec
		check   func(t *testing.T, o setup.Options)
		wantErr string
	}{
		{name: "builtin default dir", spec: policy.MeshSpec{TrustDomain: "td"}, check: func(t *testing.T, o setup.Options) {
			if o.Issuer != setup.IssuerLocal || o.Local.StateDir != ".maestro/ca" || o.TrustDomain != "td" {
				t.Errorf("%+v", o)
			}
		}},
		{name: "builtin dir and lifetimes", spec: policy.MeshSpec{TrustDomain: "td",
			CA:           policy.CA{Issuer: policy.IssuerBuiltin, Builtin: &policy.BuiltinCA{StateDir: "/var/ca", RootTTL: policy.Duration(48 * time.Hour)}},
			Certificates: policy.Certificates{TTL: policy.Duration(time.Hour), RotateAt: 0.5}},
			check: func(t *testing.T, o setup.Options) {
				if o.Local.StateDir != "/var/ca" || o.Local.RootTTL != 48*time.Hour || o.TTL != time.Hour || o.RenewFraction != 0.5 {
					t.Errorf("%+v", o)
				}
			}},
		{name: "vault token default env", spec: vault(policy.VaultAuth{}), check: func(t *testing.T, o setup.Options) {
			v := o.Vault
			if o.Issuer != setup.IssuerVault || v.Auth != "token" || v.TokenEnv != "VAULT_TOKEN" || v.Mount != "pki" || v.Mode != "issue" || v.Address != "https://vault:8200" {
				t.Errorf("%+v", v)
			}
		}},
		{name: "vault token file", spec: vault(policy.VaultAuth{Method: "token", Token: policy.SecretRef{File: "/run/tok"}}), check: func(t *testing.T, o setup.Options) {
			if o.Vault.TokenFile != "/run/tok" || o.Vault.TokenEnv != "" {
				t.Errorf("%+v", o.Vault)
			}
		}},
		{name: "vault approle", spec: vault(policy.VaultAuth{Method: "approle", RoleID: policy.SecretRef{Env: "RID"}, SecretID: policy.SecretRef{File: "/sid"}}), check: func(t *testing.T, o setup.Options) {
			v := o.Vault
			if v.AppRoleMount != "approle" || v.RoleIDEnv != "RID" || v.SecretIDFile != "/sid" {
				t.Errorf("%+v", v)
			}
		}},
		{name: "vault kubernetes", spec: vault(policy.VaultAuth{Method: "kubernetes", Role: "maestro", Mount: "k8s"}), check: func(t *testing.T, o setup.Options) {
			v := o.Vault
			if v.KubernetesMount != "k8s" || v.KubernetesRole != "maestro" || v.JWTFile == "" {
				t.Errorf("%+v", v)
			}
		}},
		{name: "vault without settings", spec: policy.MeshSpec{CA: policy.CA{Issuer: policy.IssuerVault}}, wantErr: "spec.ca.vault"},
		{name: "unknown auth", spec: vault(policy.VaultAuth{Method: "ldap"}), wantErr: "spec.ca.vault.auth.method"},
		{name: "unknown issuer", spec: policy.MeshSpec{CA: policy.CA{Issuer: "acme"}}, wantErr: "spec.ca.issuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := SetupOptions(tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}

// TestCertificatesLoaderRefusesCAChange: the issuer is opened once, so an
// edit of the CA settings is rejected (the last good set stays served)
// instead of silently ignored.
func TestCertificatesLoaderRefusesCAChange(t *testing.T) {
	src, err := os.ReadFile(examplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "mesh.yaml")
	body := strings.Replace(string(src), "stateDir: .maestro/ca", "stateDir: "+filepath.Join(dir, "ca"), 1)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pm, err := policy.Load(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenCertificates(pm.Config.Spec, CertConfig{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	load := c.Loader()
	if _, _, err := load(ctx, []string{path}); err != nil {
		t.Fatalf("first load: %v", err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(body, "ttl: 24h", "ttl: 12h", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := load(ctx, []string{path}); !errors.Is(err, ErrCARestart) {
		t.Fatalf("err = %v, want ErrCARestart", err)
	}
}
