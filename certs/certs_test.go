package certs_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/localca"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

var id = spiffe.Must("cluster.local", "ns", "sa")

func issue() (*certs.Certificate, error) {
	ca, err := localca.Open(localca.Config{TrustDomain: "cluster.local", Intermediate: true})
	if err != nil {
		return nil, err
	}
	return ca.Issue(context.Background(), certs.Request{ID: id, TTL: time.Hour})
}

func issued(t testing.TB) *certs.Certificate {
	t.Helper()
	c, err := issue()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewCertificateChecks(t *testing.T) {
	good := issued(t)
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	base := certs.Parts{ID: id, Chain: good.Chain, Key: good.Key, Bundle: good.Bundle, Requested: time.Hour, IssuedAt: good.NotBefore().Add(time.Minute)}
	tests := map[string]struct {
		mutate func(p *certs.Parts)
		want   string
	}{
		"ok":           {func(*certs.Parts) {}, ""},
		"empty chain":  {func(p *certs.Parts) { p.Chain = nil }, "empty chain"},
		"no key":       {func(p *certs.Parts) { p.Key = nil }, "no private key"},
		"no bundle":    {func(p *certs.Parts) { p.Bundle = nil }, "empty trust bundle"},
		"wrong id":     {func(p *certs.Parts) { p.ID = spiffe.Must("cluster.local", "ns", "other") }, "leaf is for spiffe://cluster.local/ns/ns/sa/sa, asked for spiffe://cluster.local/ns/ns/sa/other"},
		"wrong key":    {func(p *certs.Parts) { p.Key = otherKey }, "private key does not match"},
		"no spiffe id": {func(p *certs.Parts) { p.Chain = p.Chain[1:] }, "no spiffe id"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := base
			tc.mutate(&p)
			c, err := certs.NewCertificate(p)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.TLSCertificate().Leaf != c.Leaf || len(c.TLSCertificate().Certificate) != 2 {
					t.Fatal("tls.Certificate not assembled")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCapped(t *testing.T) {
	c := issued(t)
	notAfter := c.NotAfter()
	tests := map[string]struct {
		requested time.Duration
		issuedAt  time.Time
		want      bool
	}{
		"granted as asked":        {time.Hour, notAfter.Add(-time.Hour), false},
		"second rounding":         {time.Hour, notAfter.Add(-time.Hour - 900*time.Millisecond), false},
		"short ttl rounding":      {3 * time.Second, notAfter.Add(-3*time.Second - 900*time.Millisecond), false},
		"capped to half":          {2 * time.Hour, notAfter.Add(-time.Hour), true},
		"capped by two minutes":   {time.Hour + 2*time.Minute, notAfter.Add(-time.Hour), true},
		"no request time":         {2 * time.Hour, time.Time{}, false},
		"no requested ttl":        {0, notAfter.Add(-time.Hour), false},
		"short ttl capped by 2 s": {5 * time.Second, notAfter.Add(-3 * time.Second), true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := certs.NewCertificate(certs.Parts{ID: id, Chain: c.Chain, Key: c.Key, Bundle: c.Bundle, Requested: tc.requested, IssuedAt: tc.issuedAt})
			if err != nil {
				t.Fatal(err)
			}
			if got.Capped != tc.want {
				t.Fatalf("Capped = %v, want %v", got.Capped, tc.want)
			}
		})
	}
}

func TestBundle(t *testing.T) {
	c := issued(t)
	root := c.Bundle.Roots[0]
	b := certs.NewBundle(root, root, nil)
	if len(b.Roots) != 1 || !b.Contains(root) || !b.Equal(c.Bundle) {
		t.Fatal("duplicates or nils kept")
	}
	back, err := certs.ParseCertificates("bundle", b.PEM())
	if err != nil || len(back) != 1 || !back[0].Equal(root) {
		t.Fatalf("PEM round trip: %v", err)
	}
	if (*certs.Bundle)(nil).Equal(b) || !(*certs.Bundle)(nil).Equal(nil) {
		t.Fatal("nil Equal")
	}
}

func TestParseErrors(t *testing.T) {
	keyDER, _ := x509.MarshalPKCS8PrivateKey(issued(t).Key)
	tests := map[string]struct {
		data []byte
		key  bool
		want string
	}{
		"not pem":         {[]byte("hello"), false, "f.pem: PEM block 1: not PEM"},
		"empty":           {nil, false, "f.pem: no certificates"},
		"key not cert":    {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), false, `PEM block 1: type "PRIVATE KEY", want CERTIFICATE`},
		"garbage cert":    {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}}), false, "PEM block 1: x509"},
		"key ok":          {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), true, ""},
		"key not pem":     {[]byte("x"), true, "f.pem: not PEM"},
		"cert as key":     {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), true, `PEM type "CERTIFICATE" is not a private key`},
		"garbage ec key":  {pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}}), true, "f.pem: x509"},
		"garbage rsa key": {pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1}}), true, "f.pem: asn1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var err error
			if tc.key {
				_, err = certs.ParsePrivateKey("f.pem", tc.data)
			} else {
				_, err = certs.ParseCertificates("f.pem", tc.data)
			}
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzParseCertificates(f *testing.F) {
	f.Add(certs.EncodeCertificates(issued(f).Chain))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := certs.ParseCertificates("fuzz", data)
		if err != nil {
			return
		}
		again, err := certs.ParseCertificates("fuzz", certs.EncodeCertificates(list))
		if err != nil || len(again) != len(list) {
			t.Fatalf("re-encoding %d certs: %d, %v", len(list), len(again), err)
		}
	})
}

func FuzzParsePrivateKey(f *testing.F) {
	f.Add(issued(f).KeyPEM())
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = certs.ParsePrivateKey("fuzz", data)
	})
}
