package mtls

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/localca"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

const td = "cluster.local"

var (
	serverID = spiffe.Must(td, "maestro-system", "controlplane")
	nodeID   = spiffe.Must(td, "default", "frontend")
	otherID  = spiffe.Must(td, "default", "intruder")
)

// swappable is a Source whose certificates tests replace.
type swappable struct {
	mu    sync.Mutex
	certs map[spiffe.ID]*certs.Certificate
	trust *certs.Bundle
}

func (s *swappable) Certificate(id spiffe.ID) (*certs.Certificate, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.certs[id]
	return c, ok
}

func (s *swappable) Bundle() *certs.Bundle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.trust
}

func (s *swappable) set(c *certs.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs[c.ID] = c
}

func newCA(t *testing.T) *localca.CA {
	t.Helper()
	ca, err := localca.Open(localca.Config{TrustDomain: td, Intermediate: true})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *localca.CA, id spiffe.ID) *certs.Certificate {
	t.Helper()
	c, err := ca.Issue(context.Background(), certs.Request{ID: id, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serve runs a TLS echo-of-identity server: it writes the peer's SPIFFE ID
// and closes. It returns the address and a channel of handshake results.
func serve(t *testing.T, cfg *tls.Config) (string, <-chan error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	results := make(chan error, 16)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			tc := conn.(*tls.Conn)
			err = tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err == nil {
				err = tc.Handshake()
			}
			if err == nil {
				var id spiffe.ID
				id, err = PeerID(tc.ConnectionState())
				if err == nil {
					_, err = tc.Write([]byte(id.String() + "\n"))
				}
			}
			results <- err
			tc.Close()
		}
	}()
	return ln.Addr().String(), results
}

// dial connects and returns what the server saw as the client ID, and the
// server certificate's serial.
func dial(addr string, cfg *tls.Config) (string, string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "", "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", "", err
	}
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil {
		return "", "", err
	}
	serial := conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
	return strings.TrimSpace(string(buf[:n])), serial, nil
}

func TestHandshakes(t *testing.T) {
	ca := newCA(t)
	bundle, _ := ca.Bundle(context.Background())
	srv := &swappable{certs: map[spiffe.ID]*certs.Certificate{}, trust: bundle}
	srv.set(issue(t, ca, serverID))
	addr, results := serve(t, ServerConfig(srv, serverID, spiffe.AllowIDs(nodeID)))

	foreignCA, err := localca.Open(localca.Config{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		client     Source
		self       spiffe.ID
		wantServer spiffe.Matcher
		ok         bool
	}{
		"allowed node":           {client: Static{Cert: issue(t, ca, nodeID)}, self: nodeID, wantServer: spiffe.AllowIDs(serverID), ok: true},
		"identity not allowed":   {client: Static{Cert: issue(t, ca, otherID)}, self: otherID, wantServer: spiffe.AllowIDs(serverID)},
		"foreign CA":             {client: Static{Cert: issue(t, foreignCA, nodeID), Trust: bundle}, self: nodeID, wantServer: spiffe.AllowIDs(serverID)},
		"no client certificate":  {client: Static{Trust: bundle}, self: nodeID, wantServer: spiffe.AllowIDs(serverID)},
		"server is not expected": {client: Static{Cert: issue(t, ca, nodeID)}, self: nodeID, wantServer: spiffe.AllowIDs(otherID)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, _, err := dial(addr, ClientConfig(tc.client, tc.self, tc.wantServer))
			if tc.ok {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				if got != nodeID.String() {
					t.Fatalf("server saw %q, want %q", got, nodeID)
				}
				if err := <-results; err != nil {
					t.Fatalf("server: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("connected as %q; want refusal", got)
			}
			// Whichever side refuses, the server's handshake fails too.
			if serr := <-results; serr == nil {
				t.Fatal("server completed the handshake")
			}
		})
	}
}

func TestServerPicksUpRotatedCertificate(t *testing.T) {
	ca := newCA(t)
	bundle, _ := ca.Bundle(context.Background())
	srv := &swappable{certs: map[spiffe.ID]*certs.Certificate{}, trust: bundle}
	first := issue(t, ca, serverID)
	srv.set(first)
	addr, _ := serve(t, ServerConfig(srv, serverID, spiffe.AllowTrustDomain(td)))
	client := ClientConfig(Static{Cert: issue(t, ca, nodeID)}, nodeID, spiffe.AllowIDs(serverID))

	_, serial, err := dial(addr, client)
	if err != nil || serial != first.Leaf.SerialNumber.Text(16) {
		t.Fatalf("first handshake: serial %s, %v", serial, err)
	}
	second := issue(t, ca, serverID)
	srv.set(second)
	_, serial, err = dial(addr, client)
	if err != nil || serial != second.Leaf.SerialNumber.Text(16) {
		t.Fatalf("after rotation: serial %s, %v; want %s", serial, err, second.Serial())
	}

	srv.mu.Lock()
	delete(srv.certs, serverID)
	srv.mu.Unlock()
	if _, _, err := dial(addr, client); err == nil {
		t.Fatal("handshake succeeded without a server certificate")
	}
}

func TestPeerIDFromGRPCContext(t *testing.T) {
	ca := newCA(t)
	bundle, _ := ca.Bundle(context.Background())
	srvSrc := Static{Cert: issue(t, ca, serverID)}
	seen := make(chan spiffe.ID, 1)
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(ServerConfig(srvSrc, serverID, spiffe.AllowTrustDomain(td)))),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			id, err := PeerIDFromContext(ctx)
			if err != nil {
				return nil, status.Error(codes.Unauthenticated, err.Error())
			}
			if id != nodeID {
				return nil, status.Errorf(codes.PermissionDenied, "%s may not call %s", id, info.FullMethod)
			}
			seen <- id
			return h(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gs.Serve(ln) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	call := func(id spiffe.ID) error {
		creds := credentials.NewTLS(ClientConfig(Static{Cert: issue(t, ca, id), Trust: bundle}, id, spiffe.AllowIDs(serverID)))
		cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := call(nodeID); err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got != nodeID {
		t.Fatalf("interceptor saw %v", got)
	}
	if err := call(otherID); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("other identity: %v, want PermissionDenied", err)
	}
	if _, err := PeerIDFromContext(context.Background()); !errors.Is(err, ErrNoPeer) {
		t.Fatalf("no peer: %v", err)
	}
}
