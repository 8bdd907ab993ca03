package vaulttest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/maestro-ml/maestro/certs/vault/vaulttest"
)

// TestStandbyAnswersAsVaultDocuments: a standby redirects API requests to
// the active node with 307 (the API client follows it), answers 503 while
// no node is active, and a performance standby serves reads itself.
func TestStandbyAnswersAsVaultDocuments(t *testing.T) {
	standby, _ := newServer(t)
	active, _ := newServer(t)
	c := newClient(t, standby, "")
	ctx := context.Background()
	chain := func() (string, error) {
		r, err := c.Logical().ReadRawWithContext(ctx, "pki/ca_chain")
		if err != nil {
			return "", err
		}
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		return string(b), err
	}
	tests := []struct {
		name          string
		standby, perf bool
		active        string
		want          *vaulttest.Server // whose chain answers
		wantCode      int
		wantMsg       string
	}{
		{name: "active node serves", want: standby},
		{name: "standby redirects to the active node", standby: true, active: active.Addr(), want: active},
		{name: "standby during an election", standby: true, wantCode: http.StatusServiceUnavailable, wantMsg: "no active Vault instance found"},
		{name: "performance standby serves reads", standby: true, perf: true, want: standby},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			standby.SetStandby(tc.standby, tc.perf)
			standby.SetActive(tc.active)
			t.Cleanup(func() { standby.SetStandby(false, false); standby.SetActive("") })
			got, err := chain()
			if tc.want == nil {
				var re *api.ResponseError
				if !errors.As(err, &re) || re.StatusCode != tc.wantCode || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("err = %v, want %d %q", err, tc.wantCode, tc.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(got, strings.TrimSpace(string(tc.want.RootPEM()))) {
				t.Fatal("answered by the wrong node")
			}
		})
	}
}

// TestTLSServer: with Config.TLS the server speaks HTTPS; a client
// trusting CACertPEM reaches it, one that does not is refused.
func TestTLSServer(t *testing.T) {
	s, err := vaulttest.New(vaulttest.Config{TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if !strings.HasPrefix(s.Addr(), "https://") {
		t.Fatalf("address %s is not https", s.Addr())
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, s.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	health := func(ca string) error {
		cfg := api.DefaultConfig()
		cfg.Address, cfg.MaxRetries, cfg.Timeout = s.Addr(), 0, 5*time.Second
		if ca != "" {
			if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: ca}); err != nil {
				return err
			}
		}
		c, err := api.NewClient(cfg)
		if err != nil {
			return err
		}
		_, err = c.Sys().HealthWithContext(context.Background())
		return err
	}
	if err := health(caFile); err != nil {
		t.Fatalf("trusting client: %v", err)
	}
	if err := health(""); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusting client: err = %v, want a certificate error", err)
	}
}
