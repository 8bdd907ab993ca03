package certfile

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/localca"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

func issue(t *testing.T, ca *localca.CA, sa string) *certs.Certificate {
	t.Helper()
	c, err := ca.Issue(context.Background(), certs.Request{ID: spiffe.Must("td", "ns", sa), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestWriteLoadRoundTrip(t *testing.T) {
	ca, err := localca.Open(localca.Config{TrustDomain: "td", Intermediate: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "node")
	c := issue(t, ca, "web")
	if err := Write(dir, c); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v)", st.Mode().Perm(), err)
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID != c.ID || back.Serial() != c.Serial() || len(back.Chain) != 2 || !back.Bundle.Equal(c.Bundle) {
		t.Fatalf("round trip changed the certificate: %v %v", back.ID, back.Serial())
	}

	// Rewriting replaces every file.
	next := issue(t, ca, "web")
	if err := Write(dir, next); err != nil {
		t.Fatal(err)
	}
	if again, err := Load(dir); err != nil || again.Serial() != next.Serial() {
		t.Fatalf("after rewrite: %v %v", again, err)
	}
}

func TestLoadErrors(t *testing.T) {
	ca, err := localca.Open(localca.Config{TrustDomain: "td"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), CertFile) {
		t.Fatalf("empty dir: %v", err)
	}
	if err := Write(dir, issue(t, ca, "a")); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if err := Write(other, issue(t, ca, "b")); err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(filepath.Join(other, KeyFile))
	if err := os.WriteFile(filepath.Join(dir, KeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key: %v", err)
	}
	if err := Write(dir, nil); err == nil {
		t.Fatal("nil certificate written")
	}
}
