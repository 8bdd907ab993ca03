package secretauth

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/certs/localca"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

const (
	td     = "cluster.local"
	bundle = "trust-bundle"
	token  = "bootstrap-token-0123456789"
)

var (
	web    = spiffe.Must(td, "default", "web")
	db     = spiffe.Must(td, "default", "db")
	legacy = spiffe.Must(td, "legacy", "batch")
)

// mtlsCtx is the context of a stream whose client presented id's leaf.
func mtlsCtx(t *testing.T, ca certs.Issuer, id spiffe.ID) context.Context {
	t.Helper()
	c, err := ca.Issue(context.Background(), certs.Request{ID: id, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	info := credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: c.Chain}}
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: info})
}

func tokenCtx(tok string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(TokenHeader, "Bearer "+tok))
}

func TestGuard(t *testing.T) {
	ca, err := localca.Open(localca.Config{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := localca.Open(localca.Config{TrustDomain: "other.domain"})
	if err != nil {
		t.Fatal(err)
	}
	var auditBuf bytes.Buffer
	reg := prometheus.NewRegistry()
	g, err := New(Config{
		TrustDomain: td,
		Tokens:      map[string][]spiffe.ID{token: {legacy}},
		Shared:      []string{bundle},
		Registerer:  reg,
		Audit:       audit.New(&auditBuf, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		ctx     context.Context
		names   []string
		openErr error
		wantErr error
	}{
		"own cert and bundle":        {ctx: mtlsCtx(t, ca, web), names: []string{web.String(), bundle}},
		"another identity's cert":    {ctx: mtlsCtx(t, ca, web), names: []string{bundle, db.String()}, wantErr: ErrRefused},
		"wildcard":                   {ctx: mtlsCtx(t, ca, web), names: nil, wantErr: ErrRefused},
		"explicit wildcard":          {ctx: mtlsCtx(t, ca, web), names: []string{"*"}, wantErr: ErrRefused},
		"token identity":             {ctx: tokenCtx(token), names: []string{legacy.String(), bundle}},
		"token, other identity":      {ctx: tokenCtx(token), names: []string{web.String()}, wantErr: ErrRefused},
		"unknown token":              {ctx: tokenCtx("not-a-token-at-all-xx"), openErr: ErrUnauthenticated},
		"nothing presented":          {ctx: context.Background(), openErr: ErrUnauthenticated},
		"certificate of other trust": {ctx: mtlsCtx(t, foreign, spiffe.Must("other.domain", "default", "web")), openErr: ErrUnauthenticated},
	}
	var id int64
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			id++
			err := g.Open(tc.ctx, id)
			if !errors.Is(err, tc.openErr) || (tc.openErr == nil) != (err == nil) {
				t.Fatalf("Open: %v, want %v", err, tc.openErr)
			}
			if err != nil {
				return
			}
			defer g.Close(id)
			err = g.Check(tc.ctx, id, "node-1", tc.names)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Check: %v, want %v", err, tc.wantErr)
			}
		})
	}
	if err := g.Check(context.Background(), 9999, "n", []string{bundle}); !errors.Is(err, ErrRefused) {
		t.Fatalf("unknown stream: %v", err)
	}

	want := map[string]float64{"not_entitled": 2, "wildcard": 2, "unauthenticated": 3, "unknown_stream": 1}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[label(m, "reason")] = m.GetCounter().GetValue()
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("refusals{reason=%q} = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	lines := strings.Split(strings.TrimSpace(auditBuf.String()), "\n")
	if len(lines) != 8 {
		t.Fatalf("%d audit lines, want 8:\n%s", len(lines), auditBuf.String())
	}
	if !strings.Contains(auditBuf.String(), `"identity":"`+db.String()+`"`) || !strings.Contains(auditBuf.String(), `"peer":"`+web.String()+`"`) {
		t.Fatalf("refusal of db to web not audited:\n%s", auditBuf.String())
	}
	if strings.Contains(auditBuf.String(), token) {
		t.Fatal("a bootstrap token was written to the audit log")
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("no trust domain accepted")
	}
	if _, err := New(Config{TrustDomain: td, Tokens: map[string][]spiffe.ID{"short": {web}}}); err == nil {
		t.Fatal("short token accepted")
	}
	if _, err := New(Config{TrustDomain: td, Tokens: map[string][]spiffe.ID{token: {{}}}}); err == nil {
		t.Fatal("invalid token identity accepted")
	}
}
