package controlplane

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/maestro-ml/maestro/certs/vault/vaulttest"
	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/internal/e2etest"
	"github.com/maestro-ml/maestro/internal/syncbuf"
)

// vaultFault is one way Vault fails, as its documentation describes, and
// how it heals.
type vaultFault struct {
	name string
	tls  bool
	set  func(s *vaulttest.Server, on bool)
	// failing is false for a fault that only slows issuance down.
	failing bool
}

var vaultFaults = []vaultFault{
	{name: "down", failing: true, set: func(s *vaulttest.Server, on bool) { s.SetDown(on) }},
	{name: "down over TLS", tls: true, failing: true, set: func(s *vaulttest.Server, on bool) { s.SetDown(on) }},
	{name: "sealed 503", failing: true, set: func(s *vaulttest.Server, on bool) { s.SetSealed(on) }},
	{name: "standby without an active node", failing: true, set: func(s *vaulttest.Server, on bool) { s.SetStandby(on, false) }},
	{name: "performance standby without an active node", failing: true, set: func(s *vaulttest.Server, on bool) { s.SetStandby(on, true) }},
	{name: "rate limited 429", failing: true, set: func(s *vaulttest.Server, on bool) {
		if on {
			s.SetFailure(http.StatusTooManyRequests)
		} else {
			s.SetFailure(0)
		}
	}},
	{name: "slow 1s answers", set: func(s *vaulttest.Server, on bool) {
		if on {
			s.SetLatency(time.Second)
		} else {
			s.SetLatency(0)
		}
	}},
}

// TestReliabilityVaultFaultsThroughControlPlane starts `maestro
// controlplane`'s wiring against a Vault that is failing in each
// documented way. The control plane must start (not exit), be live and
// not ready, become ready by itself once Vault heals (the figure is the
// time from healing to ready), then ride a second outage longer than a
// certificate's 3 s lifetime: not ready while certificates are expired,
// no expired certificate ever pushed, and recovery once Vault is back.
func TestReliabilityVaultFaultsThroughControlPlane(t *testing.T) {
	for _, f := range vaultFaults {
		t.Run(f.name, func(t *testing.T) {
			srv, path := faultyVault(t, f.tls)
			f.set(srv, true)
			started := time.Now()
			logs := &syncbuf.Buffer{}
			c, addrs := vaultPlane(t, path, slog.New(slog.NewTextHandler(logs, nil)))
			admin := "http://" + addrs.Admin.String()
			if code := httpCode(t, admin+"/healthz"); code != http.StatusOK {
				t.Fatalf("/healthz %d while Vault is %s", code, f.name)
			}
			if f.failing {
				if code := httpCode(t, admin+"/readyz"); code != http.StatusServiceUnavailable {
					t.Fatalf("/readyz %d while Vault is %s, want 503", code, f.name)
				}
			}
			if !f.failing {
				// Slow is not down: ready without healing.
				waitReady(t, admin, true)
				t.Logf("%s: ready %v after start", f.name, time.Since(started).Round(time.Millisecond))
				f.set(srv, false)
			} else {
				healed := time.Now()
				f.set(srv, false)
				waitReady(t, admin, true)
				t.Logf("%s at start: ready %v after Vault healed", f.name, time.Since(healed).Round(time.Millisecond))
			}
			// Nothing was served before Vault healed; the log must not
			// claim that a last good configuration was.
			if strings.Contains(logs.String(), "last good configuration is still served") {
				t.Errorf("false claim in the logs:\n%s", logs.String())
			}

			ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
			defer cancel()
			w := watchChurnSecrets(t, ctx, c, addrs.XDS.String())
			first, _ := w.next()
			if !f.failing {
				return
			}
			f.set(srv, true)
			waitExpired(t, ctx, c)
			waitReady(t, admin, false)
			healed := time.Now()
			f.set(srv, false)
			w.waitRenewed(first, healed, 3*time.Second)
			pushed := time.Since(healed)
			waitReady(t, admin, true)
			t.Logf("%s past expiry: new certificate pushed %v and ready %v after Vault healed", f.name,
				pushed.Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
		})
	}
}

// faultyVault is a test Vault (over TLS if asked) and a STRICT policy
// with 3 s certificates issued from it.
func faultyVault(t *testing.T, tls bool) (*vaulttest.Server, string) {
	t.Helper()
	srv, err := vaulttest.New(vaulttest.Config{
		TLS:      tls,
		Roles:    map[string]vaulttest.Role{"mesh": {AllowedURISANs: []string{"spiffe://maestro.local/*"}, MaxTTL: time.Hour}},
		Policies: map[string][]string{"pki": {"pki/issue/mesh", "pki/sign/mesh"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	t.Setenv("MAESTRO_E2E_VAULT_TOKEN", srv.NewToken(vaulttest.TokenSpec{Policies: []string{"pki"}}))
	path := vaultPolicy(t, srv.Addr(), "MAESTRO_E2E_VAULT_TOKEN", "3s")
	if tls {
		ca := filepath.Join(t.TempDir(), "vault-ca.pem")
		write(t, ca, string(srv.CACertPEM()))
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		write(t, path, strings.Replace(string(src), "      role: mesh\n", "      role: mesh\n      caCert: "+ca+"\n", 1))
	}
	return srv, path
}

// vaultPlane runs the control plane as `maestro controlplane` does
// (WithCertificates, xDS over mTLS), with retries bounded to a second so
// that recovery is measured in test time.
func vaultPlane(t *testing.T, path string, log *slog.Logger) (*controlplane.Certificates, controlplane.Addrs) {
	t.Helper()
	p := e2etest.Start(t, e2etest.Config{Path: path, Limit: waitLimit,
		Certs: controlplane.CertConfig{Logger: log, XDSNames: controlplane.XDSNames("127.0.0.1:0", nil),
			MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Wait: 2 * time.Second},
		Server: func(pc *controlplane.Config, c *controlplane.Certificates) {
			pc.Logger = log
			pc.GRPCOptions = []grpc.ServerOption{grpc.Creds(credentials.NewTLS(c.ServerTLS()))}
		},
	})
	return p.Certs, p.Addrs
}

func httpCode(t *testing.T, url string) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res.StatusCode
}

// waitReady polls /readyz until it says want, within waitLimit.
func waitReady(t *testing.T, admin string, want bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitLimit)
	for {
		if (httpCode(t, admin+"/readyz") == http.StatusOK) == want {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("/readyz never became ready=%v", want)
		}
	}
}

// TestReliabilityServesWhatNeedsNoCertificateWhileVaultIsDown: with Vault
// unreachable from the start, a plaintext control plane whose policy
// needs no workload certificate (PERMISSIVE) is ready and serves its
// configuration at once; nothing waits for Vault.
func TestReliabilityServesWhatNeedsNoCertificateWhileVaultIsDown(t *testing.T) {
	srv, strict := faultyVault(t, false)
	srv.SetDown(true)
	src, err := os.ReadFile(strict)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	write(t, path, strings.Replace(string(src), "mode: STRICT", "mode: PERMISSIVE", 1))
	c, addr := tokenPlane(t, path, false, false)
	if len(c.Manager().Current().Certs) != 0 {
		t.Fatal("certificates were issued by a Vault that is down")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	stream, err := adsConn(t, addr).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node(t, "churn-1", "sidecar", "churn"), TypeUrl: resource.ListenerType}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResources()) == 0 {
		t.Fatal("no listeners served while Vault is down")
	}
	if err := c.Ready(); err != nil {
		t.Fatalf("not ready though nothing needs a certificate: %v", err)
	}
}
