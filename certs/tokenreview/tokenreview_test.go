package tokenreview

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/certs/tokenreview/tokenreviewtest"
)

const caller = "controlplane-own-token"

// apiServer is the fake API server and its CA file.
type apiServer struct {
	*tokenreviewtest.Server
	caFile string
}

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	s := tokenreviewtest.New(tokenreviewtest.Config{Caller: caller, Tokens: map[string]tokenreviewtest.Token{
		"churn-pod-token":  {User: "system:serviceaccount:ml:churn"},
		"maestro-aud":      {User: "system:serviceaccount:ml:fraud", Audiences: []string{"maestro"}},
		"user-token":       {User: "alice@example.com"},
		"malformed-sa-tok": {User: "system:serviceaccount:ml"},
	}})
	t.Cleanup(s.Close)
	a := &apiServer{Server: s, caFile: filepath.Join(t.TempDir(), "ca.crt")}
	if err := os.WriteFile(a.caFile, s.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *apiServer) reviewer(t *testing.T, mutate func(*Config)) *Reviewer {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(caller+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Host: a.URL(), CAFile: a.caFile, TokenFile: tokenFile}
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReview(t *testing.T) {
	a := newAPIServer(t)
	tests := []struct {
		name      string
		token     string
		audiences []string
		allowed   bool
		caller    string
		wantNS    string
		wantSA    string
		rejected  bool   // ErrRejected: the token is not good
		wantErr   string // another error: the API server could not be asked
	}{
		{name: "service account token", token: "churn-pod-token", allowed: true, wantNS: "ml", wantSA: "churn"},
		{name: "token for our audience", token: "maestro-aud", audiences: []string{"maestro"}, allowed: true, wantNS: "ml", wantSA: "fraud"},
		{name: "token for another audience", token: "churn-pod-token", audiences: []string{"maestro"}, allowed: true, rejected: true},
		{name: "unknown token", token: "forged", allowed: true, rejected: true},
		{name: "user, not a service account", token: "user-token", allowed: true, rejected: true},
		{name: "malformed service account name", token: "malformed-sa-tok", allowed: true, rejected: true},
		{name: "our own token refused", token: "churn-pod-token", allowed: true, caller: "stale-token", wantErr: "401: Unauthorized"},
		{name: "no RBAC to review", token: "churn-pod-token", allowed: false, wantErr: "403: tokenreviews.authentication.k8s.io is forbidden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a.SetDenied(!tc.allowed)
			r := a.reviewer(t, func(c *Config) {
				c.Audiences = tc.audiences
				if tc.caller != "" {
					if err := os.WriteFile(c.TokenFile, []byte(tc.caller), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			})
			ns, sa, err := r.Review(context.Background(), tc.token)
			switch {
			case tc.wantErr != "":
				if err == nil || errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q (not a rejection)", err, tc.wantErr)
				}
			case tc.rejected:
				if !errors.Is(err, ErrRejected) {
					t.Fatalf("err = %v, want ErrRejected", err)
				}
			case err != nil:
				t.Fatal(err)
			case ns != tc.wantNS || sa != tc.wantSA:
				t.Fatalf("got %s/%s, want %s/%s", ns, sa, tc.wantNS, tc.wantSA)
			}
		})
	}
}

// TestReviewCachesAnswersNotFailures: an answer is reused until CacheTTL
// passes; an API server that cannot be reached is asked again next time.
func TestReviewCachesAnswersNotFailures(t *testing.T) {
	a := newAPIServer(t)
	now := time.Unix(1_000_000, 0)
	r := a.reviewer(t, func(c *Config) { c.Now = func() time.Time { return now } })
	ctx := context.Background()
	for _, tok := range []string{"churn-pod-token", "forged"} {
		before := a.Requests()
		for range 3 {
			_, _, _ = r.Review(ctx, tok)
		}
		if got := a.Requests() - before; got != 1 {
			t.Fatalf("%s: %d reviews for 3 lookups within the TTL, want 1", tok, got)
		}
	}
	now = now.Add(DefaultCacheTTL + time.Second)
	before := a.Requests()
	if _, _, err := r.Review(ctx, "churn-pod-token"); err != nil {
		t.Fatal(err)
	}
	if a.Requests()-before != 1 {
		t.Fatal("an expired answer was reused")
	}

	down := a.reviewer(t, func(c *Config) { c.Host = "https://127.0.0.1:1" })
	for range 2 {
		if _, _, err := down.Review(ctx, "churn-pod-token"); err == nil || errors.Is(err, ErrRejected) {
			t.Fatalf("unreachable API server: err = %v, want a non-rejection error", err)
		}
	}
	if len(down.cache) != 0 {
		t.Fatal("a failure to reach the API server was cached")
	}
}

func TestInCluster(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	cfg, err := InCluster(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://10.96.0.1:443" || cfg.CAFile != DefaultCAFile || cfg.TokenFile != DefaultTokenFile {
		t.Fatalf("%+v", cfg)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := InCluster(Config{}); err == nil {
		t.Fatal("no error outside a pod")
	}
}
