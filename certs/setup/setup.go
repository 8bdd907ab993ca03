// Package setup turns Maestro's certificate options (command-line flags or
// the equivalent YAML/JSON block of a config file) into a running issuer and
// rotation manager, so that a binary wires certificates in a few lines:
//
//	var opts setup.Options
//	opts.RegisterFlags(fs)
//	...
//	certMgr, err := opts.Start(setup.Deps{Logger: log, Registerer: reg, Audit: auditLog})
//	go certMgr.Run(ctx)
//	certMgr.Manager.SetIdentities(ids)
package setup

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/certs/localca"
	"github.com/maestro-ml/maestro/certs/rotation"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/certs/vault"
)

// Issuer kinds.
const (
	IssuerLocal = "local"
	IssuerVault = "vault"
)

// Options are the certificate settings. The zero value plus TrustDomain is
// the built-in CA kept in memory; flags default StateDir so that the root
// survives restarts.
type Options struct {
	// Issuer is "local" (built-in CA, default) or "vault".
	Issuer      string `json:"issuer,omitempty"`
	TrustDomain string `json:"trustDomain,omitempty"`
	// TTL of workload certificates and the share of it after which they
	// are renewed.
	TTL           time.Duration `json:"ttl,omitempty"`
	RenewFraction float64       `json:"renewFraction,omitempty"`

	Local LocalOptions `json:"local,omitempty"`
	Vault VaultOptions `json:"vault,omitempty"`

	// Always are identities issued whatever the policy says (the control
	// plane's own, for serving xDS over mTLS).
	Always []spiffe.ID `json:"-"`
	// Names are extra DNS and IP SANs per identity (see rotation.Config).
	Names map[spiffe.ID]certs.Names `json:"-"`
	// DryRun builds and checks the configured issuer (its settings, not
	// its credentials) but issues from a throw-away in-memory built-in CA
	// of the same trust domain: nothing is written and no CA contacted.
	// For previews (`maestro validate`), which must not need a reachable
	// Vault nor create CA state, yet go through the same code.
	DryRun bool `json:"-"`
	// MinBackoff and MaxBackoff bound the retry delay after a failed
	// issuance (rotation.Config); zero keeps the rotation defaults.
	MinBackoff, MaxBackoff time.Duration `json:"-"`
}

// LocalOptions configure the built-in CA.
type LocalOptions struct {
	StateDir     string        `json:"stateDir,omitempty"`
	Intermediate bool          `json:"intermediate,omitempty"`
	RootTTL      time.Duration `json:"rootTtl,omitempty"`
}

// VaultOptions configure Vault PKI. Credentials are only ever named (an
// environment variable or a file), never given inline.
type VaultOptions struct {
	Address   string `json:"address,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	CACert    string `json:"caCert,omitempty"`
	Mount     string `json:"mount,omitempty"`
	Role      string `json:"role,omitempty"`
	// Mode is "sign" (default: Maestro makes the key) or "issue".
	Mode string `json:"mode,omitempty"`
	// Auth is "token", "approle" or "kubernetes".
	Auth string `json:"auth,omitempty"`

	TokenEnv  string `json:"tokenEnv,omitempty"`
	TokenFile string `json:"tokenFile,omitempty"`

	AppRoleMount    string `json:"approleMount,omitempty"`
	RoleIDEnv       string `json:"roleIdEnv,omitempty"`
	RoleIDFile      string `json:"roleIdFile,omitempty"`
	SecretIDEnv     string `json:"secretIdEnv,omitempty"`
	SecretIDFile    string `json:"secretIdFile,omitempty"`
	KubernetesMount string `json:"kubernetesMount,omitempty"`
	KubernetesRole  string `json:"kubernetesRole,omitempty"`
	JWTFile         string `json:"jwtFile,omitempty"`
}

// RegisterFlags adds the --ca-*, --cert-* and --vault-* flags to fs.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Issuer, "ca", IssuerLocal, "certificate issuer: local (built-in CA) or vault")
	// The policy's default trust domain, so that certificates issued from
	// flags and from a policy without spec.trustDomain trust each other.
	fs.StringVar(&o.TrustDomain, "trust-domain", "maestro.local", "SPIFFE trust domain of workload identities")
	fs.DurationVar(&o.TTL, "cert-ttl", time.Hour, "lifetime asked for workload certificates")
	fs.Float64Var(&o.RenewFraction, "cert-renew-at", rotation.DefaultRenewFraction, "share of a certificate's lifetime after which it is renewed (with jitter)")
	fs.StringVar(&o.Local.StateDir, "ca-dir", ".maestro/ca", "built-in CA state directory (root and keys, 0600)")
	fs.DurationVar(&o.Local.RootTTL, "ca-root-ttl", localca.DefaultRootTTL, "lifetime of a new built-in CA root")
	fs.BoolVar(&o.Local.Intermediate, "ca-intermediate", false, "built-in CA signs through an intermediate")
	v := &o.Vault
	fs.StringVar(&v.Address, "vault-addr", "", "Vault address (default: $VAULT_ADDR)")
	fs.StringVar(&v.Namespace, "vault-namespace", "", "Vault Enterprise namespace")
	fs.StringVar(&v.CACert, "vault-ca-cert", "", "PEM file of CAs for Vault's TLS certificate")
	fs.StringVar(&v.Mount, "vault-pki-mount", "pki", "Vault PKI mount path")
	fs.StringVar(&v.Role, "vault-pki-role", "maestro-mesh", "Vault PKI role")
	fs.StringVar(&v.Mode, "vault-pki-mode", string(vault.ModeSign), "sign (send a CSR; keys stay local) or issue (Vault makes keys)")
	fs.StringVar(&v.Auth, "vault-auth", "token", "Vault auth method: token, approle or kubernetes")
	fs.StringVar(&v.TokenEnv, "vault-token-env", "VAULT_TOKEN", "environment variable holding the Vault token (token auth)")
	fs.StringVar(&v.TokenFile, "vault-token-file", "", "file holding the Vault token (token auth; overrides --vault-token-env)")
	fs.StringVar(&v.AppRoleMount, "vault-approle-mount", "approle", "AppRole auth mount path")
	fs.StringVar(&v.RoleIDEnv, "vault-role-id-env", "VAULT_ROLE_ID", "environment variable holding the AppRole role ID")
	fs.StringVar(&v.RoleIDFile, "vault-role-id-file", "", "file holding the AppRole role ID (overrides the env variable)")
	fs.StringVar(&v.SecretIDEnv, "vault-secret-id-env", "VAULT_SECRET_ID", "environment variable holding the AppRole secret ID")
	fs.StringVar(&v.SecretIDFile, "vault-secret-id-file", "", "file holding the AppRole secret ID (overrides the env variable)")
	fs.StringVar(&v.KubernetesMount, "vault-k8s-mount", "kubernetes", "Kubernetes auth mount path")
	fs.StringVar(&v.KubernetesRole, "vault-k8s-role", "maestro", "Kubernetes auth role")
	fs.StringVar(&v.JWTFile, "vault-k8s-jwt-file", vault.DefaultServiceAccountTokenFile, "service account token file (Kubernetes auth)")
}

// Deps are what the running issuer reports to; all optional.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Audit      *audit.Log
}

// Running is a started issuer and its rotation manager.
type Running struct {
	Issuer  certs.Issuer
	Manager *rotation.Manager
	// Name is "localca" or "vault".
	Name string
	run  func(ctx context.Context) error
}

// Run keeps certificates (and a Vault token) current until ctx ends.
func (r *Running) Run(ctx context.Context) error { return r.run(ctx) }

// NewIssuer builds the configured issuer without starting anything. The
// second result, when not nil, must run for the issuer's lifetime (Vault
// token renewal).
//
// # Errors
// Invalid options name the flag to fix.
func (o Options) NewIssuer(log *slog.Logger) (certs.Issuer, func(context.Context) error, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.DryRun {
		// Checked exactly as for real, then set aside.
		o.DryRun, o.Local.StateDir = false, ""
		if o.Issuer == IssuerVault {
			if _, _, err := o.NewIssuer(log); err != nil {
				return nil, nil, err
			}
			o.Issuer = IssuerLocal
		}
		log = slog.New(slog.DiscardHandler) // no warning about the in-memory root
	}
	switch o.Issuer {
	case "", IssuerLocal:
		if o.TrustDomain == "" {
			return nil, nil, errors.New("--trust-domain is required")
		}
		ca, err := localca.Open(localca.Config{Dir: o.Local.StateDir, TrustDomain: o.TrustDomain,
			Intermediate: o.Local.Intermediate, RootTTL: o.Local.RootTTL})
		if err != nil {
			return nil, nil, err
		}
		if o.Local.StateDir == "" {
			log.Warn("built-in CA has no state directory: a restart makes a new root and every peer must be re-issued")
		}
		return ca, nil, nil
	case IssuerVault:
		auth, err := o.Vault.auth()
		if err != nil {
			return nil, nil, err
		}
		addr := o.Vault.Address
		if addr == "" {
			addr = strings.TrimSpace(os.Getenv("VAULT_ADDR"))
		}
		if addr == "" {
			return nil, nil, errors.New("--vault-addr (or VAULT_ADDR) is required with --ca=vault")
		}
		iss, err := vault.New(vault.Config{
			Address: addr, Namespace: o.Vault.Namespace, CACert: o.Vault.CACert,
			Mount: o.Vault.Mount, Role: o.Vault.Role, Mode: vault.Mode(o.Vault.Mode),
			Auth: auth, Logger: log,
		})
		if err != nil {
			return nil, nil, err
		}
		return iss, iss.Run, nil
	default:
		return nil, nil, fmt.Errorf("--ca %q: want local or vault", o.Issuer)
	}
}

func (v VaultOptions) auth() (vault.Auth, error) {
	secret := func(env, file string) vault.Secret {
		if file != "" {
			return vault.Secret{File: file}
		}
		return vault.Secret{Env: env}
	}
	switch v.Auth {
	case "", "token":
		return vault.TokenAuth{Token: secret(v.TokenEnv, v.TokenFile)}, nil
	case "approle":
		return vault.AppRoleAuth{Mount: v.AppRoleMount, RoleID: secret(v.RoleIDEnv, v.RoleIDFile), SecretID: secret(v.SecretIDEnv, v.SecretIDFile)}, nil
	case "kubernetes":
		if v.KubernetesRole == "" {
			return nil, errors.New("--vault-k8s-role is required with --vault-auth=kubernetes")
		}
		return vault.KubernetesAuth{Mount: v.KubernetesMount, Role: v.KubernetesRole, JWT: vault.Secret{File: v.JWTFile}}, nil
	default:
		return nil, fmt.Errorf("--vault-auth %q: want token, approle or kubernetes", v.Auth)
	}
}

// Start builds the issuer and its rotation manager. Call Run on the result
// to start issuing.
func (o Options) Start(deps Deps) (*Running, error) {
	iss, issRun, err := o.NewIssuer(deps.Logger)
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	name := "localca"
	if o.Issuer == IssuerVault && !o.DryRun {
		name = "vault"
	}
	m, err := rotation.New(rotation.Config{
		Issuer: iss, IssuerName: name, TTL: o.TTL, RenewFraction: o.RenewFraction,
		MinBackoff: o.MinBackoff, MaxBackoff: o.MaxBackoff,
		Registerer: deps.Registerer, Audit: deps.Audit, Logger: deps.Logger, Always: o.Always, Names: o.Names,
	})
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	return &Running{Issuer: iss, Manager: m, Name: name, run: func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return m.Run(gctx) })
		if issRun != nil {
			g.Go(func() error { return issRun(gctx) })
		}
		return g.Wait()
	}}, nil
}
