package server

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/certs/localca"
	"github.com/maestro-ml/maestro/certs/mtls"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/internal/syncbuf"
)

const trustDomain = "mesh.local"

// pki is a CA whose clock the test can move, and the identities issued.
type pki struct {
	ca    *localca.CA
	clock atomic.Int64 // unix nanoseconds
}

func newPKI(t *testing.T, td string) *pki {
	t.Helper()
	p := &pki{}
	// The root starts three days back, so a leaf issued two days back
	// chains to it and is expired now.
	p.clock.Store(time.Now().Add(-72 * time.Hour).UnixNano())
	ca, err := localca.Open(localca.Config{TrustDomain: td, Now: func() time.Time { return time.Unix(0, p.clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	p.ca = ca
	return p
}

// issue returns a certificate for spiffe://<td>/ns/<ns>/sa/<sa> issued at
// now+back, living ttl.
func (p *pki) issue(t *testing.T, td, ns, sa string, back, ttl time.Duration) *certs.Certificate {
	t.Helper()
	id, err := spiffe.New(td, ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	p.clock.Store(time.Now().Add(back).UnixNano())
	c, err := p.ca.Issue(context.Background(), certs.Request{ID: id, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mtlsHarness is a server on mTLS with its audit trail.
type mtlsHarness struct {
	srv   *Server
	addr  string
	self  spiffe.ID
	audit *syncbuf.Buffer
}

// startMTLS serves on loopback with the control plane's certificate from
// p, trusting trust (p's root by default).
func startMTLS(t *testing.T, p *pki, trust *certs.Bundle) *mtlsHarness {
	t.Helper()
	self := p.issue(t, trustDomain, "maestro", "controlplane", 0, time.Hour)
	buf := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, Config{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Audit: audit.New(buf, nil)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := mtls.ServerConfig(mtls.Static{Cert: self, Trust: trust}, self.ID, spiffe.AllowTrustDomain(trustDomain))
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, lis, grpc.Creds(s.WatchHandshakes(credentials.NewTLS(tlsCfg)))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &mtlsHarness{srv: s, addr: lis.Addr().String(), self: self.ID, audit: buf}
}

// secretSnapshot is a snapshot whose only resources are the certificate
// secrets of ids: what ties a group to its workloads' identities.
func secretSnapshot(t *testing.T, version string, ids ...string) *cache.Snapshot {
	t.Helper()
	var res []types.Resource
	for _, id := range ids {
		res = append(res, &tlsv3.Secret{Name: id})
	}
	snap, err := cache.NewSnapshot(version, map[resource.Type][]types.Resource{resource.SecretType: res, resource.ClusterType: nil})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// byRoleWithProxyless adds proxyless nodes, in group "px", to byRole.
func byRoleWithProxyless(n model.NodeInfo) (string, bool) {
	if n.Role == model.RoleProxyless {
		return "px", true
	}
	return byRole(n)
}

// dial opens a client presenting tlsCfg.
func dial(t *testing.T, addr string, tlsCfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestReliabilityNodeGroupIsBoundToTheCertificate: under mTLS a node is
// served the group of the identity in its client certificate, whatever
// role its metadata claims; a claim of another identity's group is
// refused, logged, audited and counted.
func TestReliabilityNodeGroupIsBoundToTheCertificate(t *testing.T) {
	p := newPKI(t, trustDomain)
	h := startMTLS(t, p, nil)
	fraud := p.issue(t, trustDomain, "ml", "fraud", 0, time.Hour)
	edge := p.issue(t, trustDomain, "ml", "edge", 0, time.Hour)
	client := p.issue(t, trustDomain, "ml", "client", 0, time.Hour)
	// gw is the gateway's (it presents edge's certificate), sc the fraud
	// sidecars' (they serve fraud's); px uses no certificate.
	err := h.srv.Update(context.Background(), Set{Version: "v1", Resolve: byRoleWithProxyless, Snapshots: map[string]*cache.Snapshot{
		"gw": secretSnapshot(t, "v1", edge.ID.String()),
		"sc": secretSnapshot(t, "v1", fraud.ID.String()),
		"px": secretSnapshot(t, "v1"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		cert    *certs.Certificate
		role    string
		service string
		refused bool
	}{
		"fraud claims the gateway":             {cert: fraud, role: "gateway", refused: true},
		"fraud as its own sidecar":             {cert: fraud, role: "sidecar", service: "fraud"},
		"the gateway as itself":                {cert: edge, role: "gateway"},
		"the gateway claims fraud's sidecar":   {cert: edge, role: "sidecar", service: "fraud", refused: true},
		"fraud claims an unbound group":        {cert: fraud, role: "proxyless", refused: true},
		"an unbound identity, unbound group":   {cert: client, role: "proxyless"},
		"an unbound identity claims a gateway": {cert: client, role: "gateway", refused: true},
	}
	refused := 0
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			conn := dial(t, h.addr, mtls.ClientConfig(mtls.Static{Cert: tc.cert}, tc.cert.ID, spiffe.AllowIDs(h.self)))
			ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(streamCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			node := testNode("n-"+strings.ReplaceAll(name, " ", "-"), tc.role, tc.service)
			if err := ads.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resource.SecretType, ResourceNames: []string{tc.cert.ID.String()}}); err != nil {
				t.Fatal(err)
			}
			resp, err := ads.Recv()
			if !tc.refused {
				if err != nil {
					t.Fatalf("served nothing: %v", err)
				}
				if resp.GetVersionInfo() != "v1" {
					t.Fatalf("got version %q", resp.GetVersionInfo())
				}
				for _, n := range h.srv.Nodes() {
					if n.ID == node.GetId() && n.Identity != tc.cert.ID.String() {
						t.Errorf("node status identity %q, want %s", n.Identity, tc.cert.ID)
					}
				}
				return
			}
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.cert.ID.String()) {
				t.Fatalf("got %v (response %v), want PERMISSION_DENIED naming %s", err, resp, tc.cert.ID)
			}
			refused++
			if !strings.Contains(h.audit.String(), `"peer":"`+tc.cert.ID.String()+`"`) {
				t.Errorf("no audit event for %s:\n%s", tc.cert.ID, h.audit.String())
			}
		})
	}
	if got := value(t, h.srv.metrics.refusals.WithLabelValues(refusedIdentity)); got != float64(refused) {
		t.Errorf("node_refusals_total = %v, want %d", got, refused)
	}
}

// TestReliabilityRefusedHandshakesAreReported: every kind of bad client
// certificate is refused at the handshake and logged, audited and counted
// by reason.
func TestReliabilityRefusedHandshakesAreReported(t *testing.T) {
	p := newPKI(t, trustDomain)
	other := newPKI(t, trustDomain)
	foreign := newPKI(t, "other.local")
	mine, err := p.ca.Bundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := foreign.ca.Bundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The server trusts the foreign domain's root too, so its certificate
	// verifies and only its trust domain is wrong.
	h := startMTLS(t, p, certs.NewBundle(append(slices.Clone(mine.Roots), theirs.Roots...)...))
	expired := p.issue(t, trustDomain, "ml", "fraud", -48*time.Hour, time.Hour)
	otherCA := other.issue(t, trustDomain, "ml", "fraud", 0, time.Hour)
	otherTD := foreign.issue(t, "other.local", "ml", "fraud", 0, time.Hour)
	present := func(c *certs.Certificate) *tls.Config {
		return mtls.ClientConfig(mtls.Static{Cert: c, Trust: mine}, c.ID, spiffe.AllowIDs(h.self))
	}
	tests := map[string]struct {
		tls    *tls.Config
		reason string
	}{
		"no certificate":     {&tls.Config{InsecureSkipVerify: true}, handshakeNoCert},
		"another CA":         {present(otherCA), handshakeUnknownCA},
		"expired":            {present(expired), handshakeExpired},
		"wrong trust domain": {present(otherTD), handshakeNotAllowed},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			conn := dial(t, h.addr, tc.tls)
			ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(streamCtx(t))
			if err == nil {
				err = ads.Send(&discoveryv3.DiscoveryRequest{Node: testNode("x", "gateway", ""), TypeUrl: resource.ClusterType})
				if err == nil {
					_, err = ads.Recv()
				}
			}
			if err == nil {
				t.Fatal("a client with a bad certificate was served")
			}
			// The server counts, logs and audits after the handshake has
			// failed, in its own goroutine: wait for both to show.
			deadline := time.After(testTimeout)
			for {
				counted := value(t, h.srv.metrics.handshakes.WithLabelValues(tc.reason)) >= 1
				audited := strings.Contains(h.audit.String(), `"reason":"tls_handshake_`+tc.reason+`"`)
				if counted && audited {
					break
				}
				select {
				case <-deadline:
					t.Fatalf("handshake_failures_total{reason=%q} counted %v, audited %v; client error %v; audit:\n%s",
						tc.reason, counted, audited, err, h.audit.String())
				case <-time.After(10 * time.Millisecond):
				}
			}
		})
	}
}
