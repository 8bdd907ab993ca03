// Package tokenreview checks Kubernetes service-account tokens with the
// API server's TokenReview API (authentication.k8s.io/v1), the way Istio's
// CA authenticates a workload asking for its first certificate: the
// workload presents its pod's token, the API server says which service
// account it belongs to, and that account is the workload's identity.
//
// It is a small HTTP client (client-go is not a dependency): one POST of a
// TokenReview per unknown token, answers cached briefly. The control
// plane's own credentials are its pod's service-account token and the
// cluster CA; its service account needs permission to create tokenreviews
// (the system:auth-delegator ClusterRole grants it).
package tokenreview

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// In-cluster defaults, as Kubernetes mounts them into every pod.
const (
	DefaultTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	DefaultCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
	// DefaultCacheTTL bounds how long an answer is reused: a deleted
	// service account stops authenticating within it.
	DefaultCacheTTL = time.Minute
	// maxCached bounds the cache; past it, it is emptied.
	maxCached = 10000
	// serviceAccountPrefix starts the username of a service-account token.
	serviceAccountPrefix = "system:serviceaccount:"
)

// ErrRejected is wrapped when the API server does not authenticate a
// token (unknown, expired, for another audience, or not a service
// account's).
var ErrRejected = errors.New("token rejected by TokenReview")

// Config configures a Reviewer. Host is required (see InCluster).
type Config struct {
	// Host is the API server's base URL, https://host:port.
	Host string
	// CAFile verifies the API server's certificate; empty uses the
	// system roots.
	CAFile string
	// TokenFile holds the control plane's own service-account token,
	// re-read at every review since projected tokens rotate.
	TokenFile string
	// Audiences, when set, are the audiences a token must be for (the
	// reviewed token's aud claim); empty means the API server's own.
	Audiences []string
	// CacheTTL defaults to DefaultCacheTTL; Timeout (one review) to 10s.
	CacheTTL, Timeout time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
}

// InCluster returns cfg with Host, CAFile and TokenFile filled from the
// pod's environment (KUBERNETES_SERVICE_HOST and _PORT) and mounted
// service-account files, where not set.
//
// # Errors
// Outside a pod (no KUBERNETES_SERVICE_HOST).
func InCluster(cfg Config) (Config, error) {
	if cfg.Host == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return cfg, errors.New("tokenreview: not in a Kubernetes pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset)")
		}
		cfg.Host = "https://" + net.JoinHostPort(host, port)
	}
	if cfg.CAFile == "" {
		cfg.CAFile = DefaultCAFile
	}
	if cfg.TokenFile == "" {
		cfg.TokenFile = DefaultTokenFile
	}
	return cfg, nil
}

// Reviewer checks tokens. It is safe for concurrent use.
type Reviewer struct {
	cfg    Config
	client *http.Client

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cached
}

type cached struct {
	ns, sa  string
	err     error
	expires time.Time
}

// New returns a Reviewer.
//
// # Errors
// A missing host or an unreadable CA file.
func New(cfg Config) (*Reviewer, error) {
	if cfg.Host == "" {
		return nil, errors.New("tokenreview: API server host is required")
	}
	if cfg.TokenFile == "" {
		return nil, errors.New("tokenreview: the control plane's own token file is required")
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pemData, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tokenreview: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("tokenreview: CA file %s: no PEM certificate", cfg.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	return &Reviewer{
		cfg:    cfg,
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout},
		cache:  map[[sha256.Size]byte]cached{},
	}, nil
}

// Review returns the namespace and name of the service account token
// belongs to, as the API server's TokenReview says. Answers, positive or
// negative, are reused for CacheTTL; failures to reach the API server are
// not.
//
// # Errors
// ErrRejected (wrapped) when the API server does not authenticate the
// token or it is not a service account's; other errors when the API
// server cannot be asked (unreachable, the control plane's own token
// refused with 401/403).
func (r *Reviewer) Review(ctx context.Context, token string) (namespace, serviceAccount string, err error) {
	key := sha256.Sum256([]byte(token))
	now := r.cfg.Now()
	r.mu.Lock()
	c, ok := r.cache[key]
	r.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.ns, c.sa, c.err
	}
	ns, sa, err := r.review(ctx, token)
	if err != nil && !errors.Is(err, ErrRejected) {
		return "", "", err
	}
	r.mu.Lock()
	if len(r.cache) >= maxCached {
		clear(r.cache)
	}
	r.cache[key] = cached{ns: ns, sa: sa, err: err, expires: now.Add(r.cfg.CacheTTL)}
	r.mu.Unlock()
	return ns, sa, err
}

func (r *Reviewer) review(ctx context.Context, token string) (string, string, error) {
	self, err := os.ReadFile(r.cfg.TokenFile)
	if err != nil {
		return "", "", fmt.Errorf("tokenreview: own token: %w", err)
	}
	body, err := json.Marshal(authv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec:     authv1.TokenReviewSpec{Token: token, Audiences: r.cfg.Audiences},
	})
	if err != nil {
		return "", "", fmt.Errorf("tokenreview: %w", err)
	}
	url := strings.TrimRight(r.cfg.Host, "/") + "/apis/authentication.k8s.io/v1/tokenreviews"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", "", fmt.Errorf("tokenreview: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(self)))
	res, err := r.client.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("tokenreview: %w", err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return "", "", fmt.Errorf("tokenreview: read answer: %w", err)
	}
	if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
		var st metav1.Status
		if json.Unmarshal(data, &st) == nil && st.Message != "" {
			return "", "", fmt.Errorf("tokenreview: API server answered %d: %s", res.StatusCode, st.Message)
		}
		return "", "", fmt.Errorf("tokenreview: API server answered %d", res.StatusCode)
	}
	var out authv1.TokenReview
	if err := json.Unmarshal(data, &out); err != nil {
		return "", "", fmt.Errorf("tokenreview: decode answer: %w", err)
	}
	st := out.Status
	if !st.Authenticated {
		if st.Error != "" {
			return "", "", fmt.Errorf("%w: %s", ErrRejected, st.Error)
		}
		return "", "", ErrRejected
	}
	if len(r.cfg.Audiences) > 0 && !intersects(st.Audiences, r.cfg.Audiences) {
		return "", "", fmt.Errorf("%w: token is for audiences %v, want one of %v", ErrRejected, st.Audiences, r.cfg.Audiences)
	}
	rest, ok := strings.CutPrefix(st.User.Username, serviceAccountPrefix)
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || sa == "" || strings.Contains(sa, ":") {
		return "", "", fmt.Errorf("%w: user %q is not a service account", ErrRejected, st.User.Username)
	}
	return ns, sa, nil
}

func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}
