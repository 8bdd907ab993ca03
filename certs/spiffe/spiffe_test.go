package spiffe

import (
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    ID
		wantErr string
	}{
		"valid":              {in: "spiffe://cluster.local/ns/default/sa/frontend", want: ID{"cluster.local", "default", "frontend"}},
		"valid chars":        {in: "spiffe://a-b_c.9/ns/N.s-1/sa/S_a", want: ID{"a-b_c.9", "N.s-1", "S_a"}},
		"wrong scheme":       {in: "https://cluster.local/ns/a/sa/b", wantErr: "scheme must be spiffe://"},
		"upper scheme":       {in: "SPIFFE://cluster.local/ns/a/sa/b", wantErr: "scheme must be spiffe://"},
		"no path":            {in: "spiffe://cluster.local", wantErr: "missing path"},
		"upper trust domain": {in: "spiffe://Cluster.local/ns/a/sa/b", wantErr: `character 'C' not allowed`},
		"port":               {in: "spiffe://cluster.local:8080/ns/a/sa/b", wantErr: `character ':' not allowed`},
		"userinfo":           {in: "spiffe://u@cluster.local/ns/a/sa/b", wantErr: `character '@' not allowed`},
		"empty trust domain": {in: "spiffe:///ns/a/sa/b", wantErr: "empty trust domain"},
		"wrong shape":        {in: "spiffe://td/sa/b/ns/a", wantErr: "path must be /ns/<namespace>/sa/<account>"},
		"extra segment":      {in: "spiffe://td/ns/a/sa/b/c", wantErr: "path must be"},
		"trailing slash":     {in: "spiffe://td/ns/a/sa/b/", wantErr: "path must be"},
		"empty namespace":    {in: "spiffe://td/ns//sa/b", wantErr: "empty namespace"},
		"dot segment":        {in: "spiffe://td/ns/../sa/b", wantErr: "relative path segment"},
		"query":              {in: "spiffe://td/ns/a/sa/b?x=1", wantErr: `character '?' not allowed`},
		"fragment":           {in: "spiffe://td/ns/a/sa/b#x", wantErr: `character '#' not allowed`},
		"percent":            {in: "spiffe://td/ns/a%20/sa/b", wantErr: `character '%' not allowed`},
		"too long":           {in: "spiffe://td/ns/a/sa/" + strings.Repeat("b", 2100), wantErr: "longer than 2048"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalidID) {
					t.Fatalf("Parse(%q) error = %v, want one containing %q wrapping ErrInvalidID", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if got.String() != tc.in || got.URL().String() != tc.in {
				t.Fatalf("round trip: String %q URL %q, want %q", got.String(), got.URL(), tc.in)
			}
		})
	}
}

func TestTextRoundTrip(t *testing.T) {
	id := Must("td", "ns1", "sa1")
	b, err := id.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	var back ID
	if err := back.UnmarshalText(b); err != nil {
		t.Fatal(err)
	}
	if back != id {
		t.Fatalf("got %v, want %v", back, id)
	}
	if err := back.UnmarshalText([]byte("nope")); err == nil {
		t.Fatal("UnmarshalText accepted garbage")
	}
}

func TestFromCertificate(t *testing.T) {
	u := func(s string) *url.URL {
		p, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := map[string]struct {
		uris    []*url.URL
		want    ID
		wantErr error
	}{
		"one":        {uris: []*url.URL{u("https://example.com"), u("spiffe://td/ns/a/sa/b")}, want: Must("td", "a", "b")},
		"none":       {uris: []*url.URL{u("https://example.com")}, wantErr: ErrNoID},
		"two":        {uris: []*url.URL{u("spiffe://td/ns/a/sa/b"), u("spiffe://td/ns/a/sa/c")}, wantErr: ErrInvalidID},
		"malformed":  {uris: []*url.URL{u("spiffe://td/a/b")}, wantErr: ErrInvalidID},
		"no SAN set": {wantErr: ErrNoID},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := FromCertificate(&x509.Certificate{URIs: tc.uris})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestMatchers(t *testing.T) {
	a, b, other := Must("td", "ns", "a"), Must("td", "ns", "b"), Must("elsewhere", "ns", "a")
	ids := AllowIDs(a)
	if err := ids(a); err != nil {
		t.Fatalf("AllowIDs refused listed id: %v", err)
	}
	if err := ids(b); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("AllowIDs(b) = %v, want ErrNotAllowed", err)
	}
	td := AllowTrustDomain("td")
	if err := td(b); err != nil {
		t.Fatalf("AllowTrustDomain refused member: %v", err)
	}
	if err := td(other); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("AllowTrustDomain(other) = %v, want ErrNotAllowed", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"spiffe://cluster.local/ns/default/sa/frontend",
		"spiffe://td/ns/a/sa/b/c",
		"spiffe://td:80/ns/a/sa/b",
		"spiffe://",
		"",
		"spiffe://td/ns/%2e/sa/b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		if id.String() != s {
			t.Fatalf("accepted %q but it prints as %q", s, id.String())
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("accepted %q but Validate says %v", s, err)
		}
		back, err := url.Parse(s)
		if err != nil || back.String() != s {
			t.Fatalf("accepted %q, which net/url reads as %v (%v)", s, back, err)
		}
	})
}
