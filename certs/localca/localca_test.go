package localca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

const td = "cluster.local"

func open(t testing.TB, cfg Config) *CA {
	t.Helper()
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = td
	}
	ca, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t testing.TB, ca *CA, id spiffe.ID, ttl time.Duration) *certs.Certificate {
	t.Helper()
	c, err := ca.Issue(context.Background(), certs.Request{ID: id, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// verify checks c against bundle the way a peer does and returns its ID.
func verify(c *certs.Certificate, bundle *certs.Bundle, allow spiffe.Matcher) (spiffe.ID, error) {
	raw := make([][]byte, len(c.Chain))
	for i, x := range c.Chain {
		raw[i] = x.Raw
	}
	return spiffe.Verifier{Roots: bundle.Pool, Allow: allow}.Verify(raw)
}

func TestLeafVerifiesAgainstBundleWithExpectedID(t *testing.T) {
	for _, inter := range []bool{false, true} {
		t.Run(fmt.Sprintf("intermediate=%v", inter), func(t *testing.T) {
			ca := open(t, Config{Dir: t.TempDir(), Intermediate: inter})
			want := spiffe.Must(td, "default", "frontend")
			c := issue(t, ca, want, time.Hour)
			bundle, err := ca.Bundle(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got, err := verify(c, bundle, spiffe.AllowIDs(want))
			if err != nil {
				t.Fatalf("leaf does not verify: %v", err)
			}
			if got != want {
				t.Fatalf("verified ID %v, want %v", got, want)
			}
			if _, err := verify(c, bundle, spiffe.AllowIDs(spiffe.Must(td, "default", "other"))); !errors.Is(err, spiffe.ErrNotAllowed) {
				t.Fatalf("verify with other allowed ID: %v, want ErrNotAllowed", err)
			}
			if wantLen := map[bool]int{false: 1, true: 2}[inter]; len(c.Chain) != wantLen {
				t.Fatalf("chain length %d, want %d", len(c.Chain), wantLen)
			}
			if c.Capped {
				t.Fatal("an hour's leaf from a CA allowing a week reported as capped")
			}
			// The PEM forms are what SDS carries: they must parse back.
			chain, err := certs.ParseCertificates("chain", c.ChainPEM())
			if err != nil || len(chain) != len(c.Chain) {
				t.Fatalf("ChainPEM: %d certs, %v", len(chain), err)
			}
			if _, err := certs.ParsePrivateKey("key", c.KeyPEM()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRestartKeepsRoot(t *testing.T) {
	for _, inter := range []bool{false, true} {
		t.Run(fmt.Sprintf("intermediate=%v", inter), func(t *testing.T) {
			dir := t.TempDir()
			first := open(t, Config{Dir: dir, Intermediate: inter})
			before := issue(t, first, spiffe.Must(td, "a", "b"), time.Hour)

			second := open(t, Config{Dir: dir, Intermediate: inter})
			if !second.Root().Equal(first.Root()) {
				t.Fatal("restart made a new root")
			}
			// A leaf from before the restart still verifies against the new
			// process's bundle, which is what keeps sidecars connected.
			bundle, _ := second.Bundle(context.Background())
			if _, err := verify(before, bundle, spiffe.AllowTrustDomain(td)); err != nil {
				t.Fatalf("old leaf against restarted bundle: %v", err)
			}
			for _, name := range []string{rootKeyFile, interKeyFile} {
				st, err := os.Stat(filepath.Join(dir, name))
				if name == interKeyFile && !inter {
					if err == nil {
						t.Fatalf("%s written without an intermediate", name)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode().Perm() != 0o600 {
					t.Fatalf("%s mode %v, want 0600", name, st.Mode().Perm())
				}
			}
			st, err := os.Stat(dir)
			if err != nil || st.Mode().Perm() != 0o700 {
				t.Fatalf("state dir mode %v (%v), want 0700", st.Mode().Perm(), err)
			}
		})
	}
}

func TestOpenRejectsInconsistentState(t *testing.T) {
	dir := t.TempDir()
	open(t, Config{Dir: dir})
	other := t.TempDir()
	open(t, Config{Dir: other})
	// Pair one root with another root's key.
	key, err := os.ReadFile(filepath.Join(other, rootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, rootKeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(Config{Dir: dir, TrustDomain: td})
	if err == nil || !strings.Contains(err.Error(), "does not match") || !strings.Contains(err.Error(), rootFile) {
		t.Fatalf("Open with mismatched key: %v", err)
	}

	garbage := t.TempDir()
	if err := os.WriteFile(filepath.Join(garbage, rootFile), []byte("not pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(garbage, rootKeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: garbage, TrustDomain: td}); err == nil || !strings.Contains(err.Error(), "root.pem: PEM block 1: not PEM") {
		t.Fatalf("Open with garbage root: %v", err)
	}
}

func TestOpenCompletesInterruptedRootWrite(t *testing.T) {
	dir := t.TempDir()
	ca := open(t, Config{Dir: dir})
	oldRoot := ca.Root()
	if err := ca.RotateRoot(context.Background()); err != nil {
		t.Fatal(err)
	}
	newRoot := ca.Root()
	// Recreate the state a crash between persist's two renames leaves: the
	// new key in place, the new certificate still pending, the old one live.
	newPEM, err := os.ReadFile(filepath.Join(dir, rootFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, rootFile+pendingSuffix), newPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, rootFile), certs.EncodeCertificates([]*x509.Certificate{oldRoot}), 0o644); err != nil {
		t.Fatal(err)
	}
	reopened := open(t, Config{Dir: dir})
	if !reopened.Root().Equal(newRoot) {
		t.Fatal("interrupted write not completed with the new root")
	}
	if _, err := os.Stat(filepath.Join(dir, rootFile+pendingSuffix)); err == nil {
		t.Fatal("pending file left behind")
	}
}

func TestIssueRefusals(t *testing.T) {
	ca := open(t, Config{})
	tests := map[string]struct {
		id   spiffe.ID
		want string
	}{
		"other trust domain": {spiffe.Must("evil.example", "a", "b"), `trust domain is not "cluster.local"`},
		"invalid id":         {spiffe.ID{TrustDomain: td, Namespace: "a/b", ServiceAccount: "c"}, "invalid spiffe id"},
		"zero id":            {spiffe.ID{}, "empty trust domain"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ca.Issue(context.Background(), certs.Request{ID: tc.id, TTL: time.Hour})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := Open(Config{}); err == nil {
		t.Fatal("Open without trust domain succeeded")
	}
}

func TestTTLCappedAndReported(t *testing.T) {
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	ca := open(t, Config{MaxTTL: time.Hour, Now: func() time.Time { return now }})
	c := issue(t, ca, spiffe.Must(td, "a", "b"), 48*time.Hour)
	if !c.NotAfter().Equal(now.Add(time.Hour)) {
		t.Fatalf("NotAfter %v, want %v", c.NotAfter(), now.Add(time.Hour))
	}
	if !c.Capped || c.Requested != 48*time.Hour {
		t.Fatalf("Capped=%v Requested=%v, want capping reported", c.Capped, c.Requested)
	}
	short := issue(t, ca, spiffe.Must(td, "a", "b"), 3*time.Second)
	if !short.NotAfter().Equal(now.Add(3*time.Second)) || short.Capped {
		t.Fatalf("3s leaf: NotAfter %v capped %v", short.NotAfter(), short.Capped)
	}
}

func TestRootRotationKeepsBothRootsUntilRetired(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	ca := open(t, Config{Dir: dir, Intermediate: true})
	id := spiffe.Must(td, "a", "b")
	oldLeaf := issue(t, ca, id, time.Hour)
	oldRoot := ca.Root()

	if err := ca.RotateRoot(ctx); err != nil {
		t.Fatal(err)
	}
	if ca.Root().Equal(oldRoot) {
		t.Fatal("rotation kept the root")
	}
	newLeaf := issue(t, ca, id, time.Hour)
	during, _ := ca.Bundle(ctx)
	if len(during.Roots) != 2 || !during.Contains(oldRoot) || !during.Contains(ca.Root()) {
		t.Fatalf("bundle during rotation has %d roots, want old and new", len(during.Roots))
	}
	for name, c := range map[string]*certs.Certificate{"old": oldLeaf, "new": newLeaf} {
		if _, err := verify(c, during, spiffe.AllowIDs(id)); err != nil {
			t.Fatalf("%s leaf against rotation bundle: %v", name, err)
		}
	}
	if _, err := verify(newLeaf, certs.NewBundle(oldRoot), spiffe.AllowIDs(id)); err == nil {
		t.Fatal("new leaf verified against the old root alone")
	}

	// The previous root survives a restart in the middle of a rotation.
	reopened := open(t, Config{Dir: dir, Intermediate: true})
	if b, _ := reopened.Bundle(ctx); !b.Equal(during) {
		t.Fatal("restart during rotation lost a root")
	}

	if err := reopened.RetirePreviousRoots(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := reopened.Bundle(ctx)
	if len(after.Roots) != 1 || !after.Contains(ca.Root()) {
		t.Fatalf("bundle after retire: %d roots", len(after.Roots))
	}
	if _, err := verify(oldLeaf, after, spiffe.AllowIDs(id)); err == nil {
		t.Fatal("old leaf still verifies after the old root was retired")
	}
	if b, _ := open(t, Config{Dir: dir, Intermediate: true}).Bundle(ctx); !b.Equal(after) {
		t.Fatal("retirement not persisted")
	}
}

func TestConcurrentIssue(t *testing.T) {
	ca := open(t, Config{Intermediate: true})
	errs := make(chan error, 20)
	for i := range 20 {
		go func() {
			_, err := ca.Issue(context.Background(), certs.Request{ID: spiffe.Must(td, "ns", fmt.Sprintf("sa%d", i)), TTL: time.Minute})
			errs <- err
		}()
	}
	rotated := make(chan error, 1)
	go func() { rotated <- ca.RotateRoot(context.Background()) }()
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := <-rotated; err != nil {
		t.Fatal(err)
	}
}

// BenchmarkIssue1000 issues leaves for 1,000 identities, the size of a large
// mesh's full re-issue, and reports the issuance rate.
func BenchmarkIssue1000(b *testing.B) {
	for _, inter := range []bool{false, true} {
		b.Run(fmt.Sprintf("intermediate=%v", inter), func(b *testing.B) {
			ca := open(b, Config{Intermediate: inter})
			ids := make([]spiffe.ID, 1000)
			for i := range ids {
				ids[i] = spiffe.Must(td, fmt.Sprintf("ns%d", i%10), fmt.Sprintf("sa%d", i))
			}
			ctx := context.Background()
			b.ResetTimer()
			start, cpuStart := time.Now(), cpuTime(b)
			for b.Loop() {
				for _, id := range ids {
					if _, err := ca.Issue(ctx, certs.Request{ID: id, TTL: time.Hour}); err != nil {
						b.Fatal(err)
					}
				}
			}
			elapsed, cpu := time.Since(start), cpuTime(b)-cpuStart
			n := float64(b.N * len(ids))
			b.ReportMetric(n/elapsed.Seconds(), "certs/s")
			b.ReportMetric(elapsed.Seconds()/float64(b.N), "s/1000certs")
			// The machine is shared: CPU time per certificate is the figure
			// that does not depend on what else runs.
			b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/cert")
		})
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestExtraNamesReachTheCertificate(t *testing.T) {
	ca := open(t, Config{})
	c, err := ca.Issue(context.Background(), certs.Request{ID: spiffe.Must(td, "maestro-system", "controlplane"), TTL: time.Hour,
		Names: certs.Names{DNS: []string{"maestro-xds.maestro.svc"}, IPs: []net.IP{net.ParseIP("::1")}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"maestro-xds.maestro.svc", "::1"} {
		if err := c.Chain[0].VerifyHostname(host); err != nil {
			t.Errorf("the leaf does not name %s: %v", host, err)
		}
	}
	if len(c.Chain[0].URIs) != 1 || c.Chain[0].URIs[0].String() != "spiffe://"+td+"/ns/maestro-system/sa/controlplane" {
		t.Errorf("URI SANs %v", c.Chain[0].URIs)
	}
}
