package controlplane

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/localca"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// CAMode says where the policy loader gets certificates from.
type CAMode int

// CA modes.
const (
	// CAFromPolicy opens the issuer the policy's Mesh document configures
	// (the built-in CA keeps its root in its state directory, relative to
	// the working directory).
	CAFromPolicy CAMode = iota
	// CAEphemeral uses an in-memory built-in CA and writes nothing: for
	// `maestro validate`, which must not create CA state.
	CAEphemeral
)

// ErrVaultNotWired is returned for a policy choosing the Vault issuer: the
// control plane does not yet build a Vault client from the policy.
var ErrVaultNotWired = errors.New("the vault issuer is not yet supported by the control plane; use issuer builtin")

// PolicyLoader returns the Loader `maestro controlplane` and `maestro
// validate` use: policy.Load, certificates for the secrets the mesh needs
// (model.RequiredSecrets), then model.Build. Certificates are kept between
// loads and re-issued only once past the policy's rotateAt share of their
// lifetime, so reloading an unchanged policy changes nothing.
func PolicyLoader(mode CAMode) Loader {
	s := &secretStore{mode: mode, issued: map[string]*certs.Certificate{}, now: time.Now}
	pl := &policy.Loader{} // re-parses only changed documents on a reload
	return func(ctx context.Context, paths []string) (*model.Mesh, []string, error) {
		pm, err := pl.Load(ctx, paths...)
		if err != nil {
			return nil, nil, err
		}
		pm = overlaid(ctx, pm) // rollout and adaptive weights (overlay.go)
		secrets, err := s.secrets(ctx, pm, model.RequiredSecrets(pm))
		if err != nil {
			return nil, nil, fmt.Errorf("certificates: %w", err)
		}
		m, err := model.Build(pm, model.BuildOptions{Secrets: secrets})
		if err != nil {
			return nil, nil, err
		}
		return m, pm.Files(), nil
	}
}

// secretStore issues and keeps the mesh's certificates.
type secretStore struct {
	mode CAMode
	now  func() time.Time

	mu sync.Mutex
	// issuer is opened on first need; issuerKey says for which CA
	// settings, so a policy edit changing them opens a new one.
	issuer    certs.Issuer
	issuerKey string
	issued    map[string]*certs.Certificate
}

func (s *secretStore) secrets(ctx context.Context, pm *policy.Mesh, names []string) ([]model.Secret, error) {
	if len(names) == 0 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	spec := pm.Config.Spec
	if err := s.open(spec); err != nil {
		return nil, err
	}
	out := make([]model.Secret, 0, len(names))
	for _, name := range names {
		if name == model.TrustBundleSecret {
			b, err := s.issuer.Bundle(ctx)
			if err != nil {
				return nil, fmt.Errorf("trust bundle: %w", err)
			}
			out = append(out, model.Secret{Name: name, TrustBundle: b.PEM()})
			continue
		}
		c, err := s.certificate(ctx, name, spec.Certificates)
		if err != nil {
			return nil, err
		}
		out = append(out, model.Secret{Name: name, Certificate: &model.Certificate{ChainPEM: c.ChainPEM(), KeyPEM: c.KeyPEM()}})
	}
	return out, nil
}

// certificate returns the kept certificate for name, re-issuing it once
// past rotateAt of its lifetime.
func (s *secretStore) certificate(ctx context.Context, name string, cfg policy.Certificates) (*certs.Certificate, error) {
	if c, ok := s.issued[name]; ok {
		renewAt := c.NotBefore().Add(time.Duration(float64(c.Lifetime()) * cfg.RotateAt))
		if cfg.RotateAt <= 0 || cfg.RotateAt >= 1 {
			renewAt = c.NotBefore().Add(c.Lifetime() / 2)
		}
		if s.now().Before(renewAt) {
			return c, nil
		}
	}
	id, err := spiffe.Parse(name)
	if err != nil {
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	c, err := s.issuer.Issue(ctx, certs.Request{ID: id, TTL: cfg.TTL.D()})
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", name, err)
	}
	s.issued[name] = c
	return c, nil
}

// open opens the issuer the mesh settings name, unless already open.
func (s *secretStore) open(spec policy.MeshSpec) error {
	if spec.CA.Issuer == policy.IssuerVault {
		return ErrVaultNotWired
	}
	dir := ""
	if s.mode == CAFromPolicy {
		dir = ".maestro/ca"
		if spec.CA.Builtin != nil && spec.CA.Builtin.StateDir != "" {
			dir = spec.CA.Builtin.StateDir
		}
		dir = filepath.Clean(dir)
	}
	key := dir + "\x00" + spec.TrustDomain
	if s.issuer != nil && s.issuerKey == key {
		return nil
	}
	cfg := localca.Config{Dir: dir, TrustDomain: spec.TrustDomain}
	if spec.CA.Builtin != nil {
		cfg.RootTTL = spec.CA.Builtin.RootTTL.D()
	}
	ca, err := localca.Open(cfg)
	if err != nil {
		return fmt.Errorf("built-in CA: %w", err)
	}
	s.issuer, s.issuerKey = ca, key
	clear(s.issued)
	return nil
}
