package controlplane

import (
	"context"
	"errors"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/snapshot"
)

// dryLoader is the Loader `maestro validate` uses for the policy at path:
// its certificates in dry run, kept issued until the test ends.
func dryLoader(t *testing.T, path string) Loader {
	t.Helper()
	pm, err := policy.Load(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenCertificates(pm.Config.Spec, CertConfig{DryRun: true, Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return c.Loader()
}

func examplePath(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "examples", "mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPolicyLoaderIsStable loads the example twice: the second load must
// give the same versions (same certificates), so an unchanged policy
// causes no push.
func TestPolicyLoaderIsStable(t *testing.T) {
	load := dryLoader(t, examplePath(t))
	tr := snapshot.NewTranslator()
	var versions []string
	for range 2 {
		m, files, err := load(context.Background(), []string{examplePath(t)})
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatal("no files to watch")
		}
		set, err := tr.Translate(m)
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, set.Version)
	}
	if versions[0] != versions[1] {
		t.Fatalf("unchanged policy gave versions %v", versions)
	}
}

func TestPolicyLoaderStrictIssuesSecrets(t *testing.T) {
	src, err := os.ReadFile(examplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	strict := strings.Replace(string(src), "mode: PERMISSIVE", "mode: STRICT", 1)
	if strict == string(src) {
		t.Fatal("example has no PERMISSIVE mode to switch")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(path, []byte(strict), 0o644); err != nil {
		t.Fatal(err)
	}
	m, _, err := dryLoader(t, path)(context.Background(), []string{path})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Secrets) == 0 {
		t.Fatal("STRICT mesh has no secrets")
	}
	for _, s := range m.Secrets {
		if s.Certificate == nil && len(s.TrustBundle) == 0 {
			t.Errorf("secret %s is empty", s.Name)
		}
	}
	if _, err := snapshot.Translate(m); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyLoaderReportsPolicyErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("apiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata:\n  name: r\nspec:\n  bogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := WithCertificates(context.Background(), []string{path}, CertConfig{DryRun: true}, func(context.Context, *Certificates) error {
		t.Error("a policy with problems opened certificates")
		return nil
	})
	var list policy.ErrorList
	if !errors.As(err, &list) || len(list) == 0 {
		t.Fatalf("err = %v, want a policy.ErrorList", err)
	}
	if list[0].File != path || list[0].Line == 0 {
		t.Errorf("first error %+v lacks file:line", list[0])
	}
}

func TestPreviewRedactsPrivateKeys(t *testing.T) {
	src, err := os.ReadFile(examplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(string(src), "mode: PERMISSIVE", "mode: STRICT", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	res, group, err := Preview(context.Background(), dryLoader(t, path), []string{path},
		model.NodeInfo{ID: "churn-1", Role: model.RoleSidecar, Service: "churn"})
	if err != nil {
		t.Fatal(err)
	}
	if group != model.SidecarGroupName("churn") {
		t.Errorf("group = %q", group)
	}
	keys := 0
	for _, it := range res.Items[resource.SecretType] {
		c := it.(*tlsv3.Secret).GetTlsCertificate()
		if c == nil {
			continue
		}
		keys++
		if got := c.GetPrivateKey().GetInlineString(); got != Redacted || len(c.GetPrivateKey().GetInlineBytes()) > 0 {
			t.Errorf("secret %s: private key not redacted", it.(*tlsv3.Secret).GetName())
		}
	}
	if keys == 0 {
		t.Fatal("a STRICT sidecar got no certificate")
	}
}
