package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/certfile"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

func TestCertsIssueAndBundle(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	out := filepath.Join(t.TempDir(), "node")
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	id := "spiffe://example.org/ns/default/sa/client"
	code := run(ctx, []string{"certs", "issue", "--ca-dir", caDir, "--trust-domain", "example.org", "--id", id, "--out", out, "--ttl", "2h"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	c, err := certfile.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID.String() != id {
		t.Fatalf("issued for %s", c.ID)
	}

	stdout.Reset()
	if code := run(ctx, []string{"certs", "bundle", "--ca-dir", caDir, "--trust-domain", "example.org"}, &stdout, &stderr); code != 0 {
		t.Fatalf("bundle exit %d: %s", code, stderr.String())
	}
	roots, err := certs.ParseCertificates("stdout", stdout.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	raw := [][]byte{c.Leaf.Raw}
	v := spiffe.Verifier{Roots: certs.NewBundle(roots...).Pool, Allow: spiffe.AllowIDs(c.ID)}
	if _, err := v.Verify(raw); err != nil {
		t.Fatalf("issued leaf does not verify against the printed bundle of the same state dir: %v", err)
	}
}

func TestCertsErrors(t *testing.T) {
	ctx := context.Background()
	tests := map[string]struct {
		args []string
		code int
		want string
	}{
		"no subcommand": {[]string{"certs"}, 2, "Usage: maestro certs <issue|bundle>"},
		"help":          {[]string{"certs", "--help"}, 0, "write cert.pem"},
		"missing out":   {[]string{"certs", "issue", "--ca-dir", "", "--id", "spiffe://cluster.local/ns/a/sa/b"}, 2, "--id and --out are required"},
		"bad id":        {[]string{"certs", "issue", "--ca-dir", "", "--id", "spiffe://x/y", "--out", "o"}, 1, "--id: invalid spiffe id"},
		"other domain":  {[]string{"certs", "issue", "--ca-dir", "", "--id", "spiffe://other/ns/a/sa/b", "--out", "o"}, 1, `trust domain is not "maestro.local"`},
		"bad issuer":    {[]string{"certs", "bundle", "--ca", "acme"}, 1, `--ca "acme"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(ctx, tc.args, &stdout, &stderr); code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q, want %q", stderr.String(), tc.want)
			}
		})
	}
}
