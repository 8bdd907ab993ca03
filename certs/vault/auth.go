package vault

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/vault/api"
)

// Auth logs in to Vault. It matches the vault/api AuthMethod interface, so
// Client.Auth().Login can use it.
type Auth interface {
	Login(ctx context.Context, c *api.Client) (*api.Secret, error)
	// Name is the method for logs ("token", "approle", "kubernetes").
	Name() string
	// CanRelogin reports whether Login can be repeated to get a fresh token
	// when the current one expires; a static token cannot.
	CanRelogin() bool
}

// TokenAuth uses an existing token.
type TokenAuth struct {
	Token Secret
}

// Name implements Auth.
func (TokenAuth) Name() string { return "token" }

// CanRelogin implements Auth.
func (TokenAuth) CanRelogin() bool { return false }

// Login sets the token and looks it up, returning its lifetime as an auth
// secret so it can be renewed like a login's.
func (a TokenAuth) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	tok, err := a.Token.Resolve()
	if err != nil {
		return nil, fmt.Errorf("token auth: %w", err)
	}
	c.SetToken(tok)
	self, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("token auth: lookup-self: %w", err)
	}
	ttl, err := self.TokenTTL()
	if err != nil {
		return nil, fmt.Errorf("token auth: lookup-self ttl: %w", err)
	}
	renewable, err := self.TokenIsRenewable()
	if err != nil {
		return nil, fmt.Errorf("token auth: lookup-self renewable: %w", err)
	}
	policies, _ := self.TokenPolicies()
	return &api.Secret{Auth: &api.SecretAuth{
		ClientToken:   tok,
		Policies:      policies,
		LeaseDuration: int(ttl.Seconds()),
		Renewable:     renewable,
	}}, nil
}

// AppRoleAuth logs in with an AppRole role ID and secret ID.
type AppRoleAuth struct {
	// Mount is the auth mount path; "approle" when empty.
	Mount    string
	RoleID   Secret
	SecretID Secret
}

// Name implements Auth.
func (AppRoleAuth) Name() string { return "approle" }

// CanRelogin implements Auth.
func (AppRoleAuth) CanRelogin() bool { return true }

// Login implements Auth.
func (a AppRoleAuth) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	roleID, err := a.RoleID.Resolve()
	if err != nil {
		return nil, fmt.Errorf("approle auth: role id: %w", err)
	}
	secretID, err := a.SecretID.Resolve()
	if err != nil {
		return nil, fmt.Errorf("approle auth: secret id: %w", err)
	}
	return login(ctx, c, "auth/"+orDefault(a.Mount, "approle")+"/login", map[string]any{"role_id": roleID, "secret_id": secretID})
}

// DefaultServiceAccountTokenFile is where Kubernetes mounts a pod's
// service account token.
const DefaultServiceAccountTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// KubernetesAuth logs in with the pod's service account token.
type KubernetesAuth struct {
	// Mount is the auth mount path; "kubernetes" when empty.
	Mount string
	Role  string
	// JWT defaults to DefaultServiceAccountTokenFile, re-read on every
	// login since Kubernetes rotates projected tokens.
	JWT Secret
}

// Name implements Auth.
func (KubernetesAuth) Name() string { return "kubernetes" }

// CanRelogin implements Auth.
func (KubernetesAuth) CanRelogin() bool { return true }

// Login implements Auth.
func (a KubernetesAuth) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	if a.Role == "" {
		return nil, errors.New("kubernetes auth: role is required")
	}
	src := a.JWT
	if !src.IsSet() {
		src = Secret{File: DefaultServiceAccountTokenFile}
	}
	jwt, err := src.Resolve()
	if err != nil {
		return nil, fmt.Errorf("kubernetes auth: service account token: %w", err)
	}
	return login(ctx, c, "auth/"+orDefault(a.Mount, "kubernetes")+"/login", map[string]any{"role": a.Role, "jwt": jwt})
}

func login(ctx context.Context, c *api.Client, path string, body map[string]any) (*api.Secret, error) {
	s, err := c.Logical().WriteWithContext(ctx, path, body)
	if err != nil {
		return nil, fmt.Errorf("login %s: %w", path, err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, fmt.Errorf("login %s: response has no auth block", path)
	}
	c.SetToken(s.Auth.ClientToken)
	return s, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
