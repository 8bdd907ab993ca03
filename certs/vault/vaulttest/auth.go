package vaulttest

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// AppRole is an AppRole auth role.
type AppRole struct {
	RoleID, SecretID string
	Policies         []string
	// TokenTTL and TokenMaxTTL are the issued tokens' lifetimes (zero:
	// never expire).
	TokenTTL, TokenMaxTTL time.Duration
}

// KubernetesRole is a Kubernetes auth role.
type KubernetesRole struct {
	BoundServiceAccountNames, BoundServiceAccountNamespaces []string
	Policies                                                []string
	TokenTTL, TokenMaxTTL                                   time.Duration
}

// ServiceAccount is what the Kubernetes TokenReview API says a JWT is.
type ServiceAccount struct {
	Name, Namespace string
}

type token struct {
	id, accessor string
	policies     []string
	path         string
	displayName  string
	meta         map[string]string
	created      time.Time
	expires      time.Time // zero: never
	ttl          time.Duration
	maxTTL       time.Duration
	renewable    bool
}

type authBlock struct {
	ClientToken   string            `json:"client_token"`
	Accessor      string            `json:"accessor"`
	Policies      []string          `json:"policies"`
	TokenPolicies []string          `json:"token_policies"`
	Metadata      map[string]string `json:"metadata"`
	LeaseDuration int               `json:"lease_duration"`
	Renewable     bool              `json:"renewable"`
	EntityID      string            `json:"entity_id"`
	TokenType     string            `json:"token_type"`
	Orphan        bool              `json:"orphan"`
}

func (s *Server) newTokenLocked(spec TokenSpec, path, display string, meta map[string]string) *token {
	now := s.now()
	policies := slices.Clone(spec.Policies)
	if !slices.Contains(policies, "root") && !slices.Contains(policies, "default") {
		policies = append(policies, "default")
	}
	slices.Sort(policies)
	t := &token{
		id:          "hvs." + strings.ReplaceAll(newID(), "-", ""),
		accessor:    strings.ReplaceAll(newID(), "-", "")[:24],
		policies:    policies,
		path:        path,
		displayName: display,
		meta:        meta,
		created:     now,
		ttl:         spec.TTL,
		maxTTL:      spec.MaxTTL,
		renewable:   spec.Renewable && spec.TTL > 0,
	}
	if spec.TTL > 0 {
		t.expires = now.Add(spec.TTL)
		if spec.MaxTTL > 0 && spec.MaxTTL < spec.TTL {
			t.expires = now.Add(spec.MaxTTL)
		}
	}
	s.tokens[t.id] = t
	return t
}

func (t *token) remaining(now time.Time) time.Duration {
	if t.expires.IsZero() {
		return 0
	}
	return t.expires.Sub(now).Truncate(time.Second)
}

func (t *token) auth(now time.Time) *authBlock {
	return &authBlock{
		ClientToken:   t.id,
		Accessor:      t.accessor,
		Policies:      t.policies,
		TokenPolicies: t.policies,
		Metadata:      t.meta,
		LeaseDuration: int(t.remaining(now) / time.Second),
		Renewable:     t.renewable,
		TokenType:     "service",
		Orphan:        true,
	}
}

// lookupToken returns the live token presented with r, revoking it if it
// has expired (Vault's expiration manager does the same).
func (s *Server) lookupToken(r *http.Request) (*token, error) {
	id := r.Header.Get("X-Vault-Token")
	if id == "" {
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			id = bearer
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[id]
	if !ok || id == "" {
		return nil, errPermissionDenied
	}
	if !t.expires.IsZero() && !s.now().Before(t.expires) {
		delete(s.tokens, id)
		return nil, errPermissionDenied
	}
	return t, nil
}

// authorize checks r's token and that one of its policies grants path.
func (s *Server) authorize(r *http.Request, path string) error {
	t, err := s.lookupToken(r)
	if err != nil {
		return err
	}
	for _, p := range t.policies {
		if p == "root" {
			return nil
		}
		for _, rule := range s.cfg.Policies[p] {
			if prefix, ok := strings.CutSuffix(rule, "*"); ok && strings.HasPrefix(path, prefix) || rule == path {
				return nil
			}
		}
	}
	return errPermissionDenied
}

func (s *Server) approleLogin(body map[string]any) (any, int, error) {
	roleID, err := stringParam(body, "role_id")
	if err != nil {
		return nil, 0, err
	}
	secretID, err := stringParam(body, "secret_id")
	if err != nil {
		return nil, 0, err
	}
	if roleID == "" {
		return nil, 0, errorf(http.StatusBadRequest, "missing role_id")
	}
	for name, role := range s.cfg.AppRoles {
		if role.RoleID != roleID {
			continue
		}
		if secretID == "" || secretID != role.SecretID {
			return nil, 0, errorf(http.StatusBadRequest, "invalid role or secret ID")
		}
		s.mu.Lock()
		t := s.newTokenLocked(TokenSpec{Policies: role.Policies, TTL: role.TokenTTL, MaxTTL: role.TokenMaxTTL, Renewable: true},
			"auth/approle/login", "approle", map[string]string{"role_name": name})
		a := t.auth(s.now())
		s.mu.Unlock()
		return &response{Auth: a}, http.StatusOK, nil
	}
	return nil, 0, errorf(http.StatusBadRequest, "invalid role or secret ID")
}

func (s *Server) kubernetesLogin(body map[string]any) (any, int, error) {
	roleName, err := stringParam(body, "role")
	if err != nil {
		return nil, 0, err
	}
	jwt, err := stringParam(body, "jwt")
	if err != nil {
		return nil, 0, err
	}
	if roleName == "" {
		return nil, 0, errorf(http.StatusBadRequest, "missing role")
	}
	if jwt == "" {
		return nil, 0, errorf(http.StatusBadRequest, "missing jwt")
	}
	role, ok := s.cfg.KubernetesRoles[roleName]
	if !ok {
		return nil, 0, errorf(http.StatusBadRequest, "invalid role name %q", roleName)
	}
	sa, ok := s.cfg.ServiceAccounts[jwt]
	if !ok {
		return nil, 0, errPermissionDenied
	}
	if !matches(role.BoundServiceAccountNames, sa.Name) {
		return nil, 0, errorf(http.StatusForbidden, "service account name not authorized")
	}
	if !matches(role.BoundServiceAccountNamespaces, sa.Namespace) {
		return nil, 0, errorf(http.StatusForbidden, "namespace not authorized")
	}
	s.mu.Lock()
	t := s.newTokenLocked(TokenSpec{Policies: role.Policies, TTL: role.TokenTTL, MaxTTL: role.TokenMaxTTL, Renewable: true},
		"auth/kubernetes/login", "kubernetes-"+sa.Namespace+"-"+sa.Name, map[string]string{
			"role": roleName, "service_account_name": sa.Name, "service_account_namespace": sa.Namespace,
		})
	a := t.auth(s.now())
	s.mu.Unlock()
	return &response{Auth: a}, http.StatusOK, nil
}

func matches(allowed []string, v string) bool {
	return slices.Contains(allowed, "*") || slices.Contains(allowed, v)
}

func (s *Server) lookupSelf(r *http.Request) (any, int, error) {
	t, err := s.lookupToken(r)
	if err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var expire any
	if !t.expires.IsZero() {
		expire = t.expires.UTC().Format(time.RFC3339Nano)
	}
	return &response{Data: map[string]any{
		"accessor":         t.accessor,
		"creation_time":    t.created.Unix(),
		"creation_ttl":     int(t.ttl / time.Second),
		"display_name":     t.displayName,
		"entity_id":        "",
		"expire_time":      expire,
		"explicit_max_ttl": int(t.maxTTL / time.Second),
		"id":               t.id,
		"issue_time":       t.created.UTC().Format(time.RFC3339Nano),
		"meta":             t.meta,
		"num_uses":         0,
		"orphan":           true,
		"path":             t.path,
		"policies":         t.policies,
		"renewable":        t.renewable,
		"ttl":              int(t.remaining(now) / time.Second),
		"type":             "service",
	}}, http.StatusOK, nil
}

// renewSelf extends the token by increment (default: its original TTL),
// capped at its max TTL with Vault's warning.
func (s *Server) renewSelf(r *http.Request, body map[string]any) (any, int, error) {
	t, err := s.lookupToken(r)
	if err != nil {
		return nil, 0, err
	}
	increment, err := durationParam(body, "increment")
	if err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !t.renewable {
		return nil, 0, errorf(http.StatusBadRequest, "lease is not renewable")
	}
	now := s.now()
	if increment <= 0 {
		increment = t.ttl
	}
	expires := now.Add(increment)
	var warnings []string
	if t.maxTTL > 0 {
		if limit := t.created.Add(t.maxTTL); expires.After(limit) {
			warnings = append(warnings, "TTL of \""+increment.String()+"\" exceeded the effective max_ttl of \""+
				limit.Sub(now).Truncate(time.Second).String()+"\"; TTL value is capped accordingly")
			expires = limit
		}
	}
	t.expires = expires
	return &response{Auth: t.auth(now), Warnings: warnings}, http.StatusOK, nil
}
