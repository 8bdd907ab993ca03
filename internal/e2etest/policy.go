package e2etest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// PlaintextPlane is a control plane serving a policy file in plaintext
// (no certificates, insecure xDS and SDS), reporting each reload.
type PlaintextPlane struct {
	*Plane
	// XDS is the xDS server's address.
	XDS     string
	reloads chan error
}

// StartPlaintext runs a plaintext control plane serving path, its xDS
// server on xdsAddr ("127.0.0.1:0" for a free port, or a stopped plane's
// address to take its place).
func StartPlaintext(t testing.TB, path, xdsAddr string) *PlaintextPlane {
	t.Helper()
	p := &PlaintextPlane{reloads: make(chan error, 10)}
	p.Plane = Start(t, Config{Path: path, Limit: WaitLimit,
		Certs: controlplane.CertConfig{DryRun: true, Plaintext: true},
		Server: func(pc *controlplane.Config, _ *controlplane.Certificates) {
			pc.Insecure, pc.InsecureSecrets, pc.XDSAddr = true, true, xdsAddr
			pc.OnReload = func(_ string, err error) { p.reloads <- err }
		},
	})
	p.XDS = p.Addrs.XDS.String()
	return p
}

// Edit replaces the policy file at path with content and waits for the
// plane to reload it without error.
func (p *PlaintextPlane) Edit(t testing.TB, path, content string) {
	t.Helper()
	ReplaceFile(t, path, content)
	select {
	case err := <-p.reloads:
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
	case <-time.After(WaitLimit):
		t.Fatal("no reload after edit")
	}
}

// ReplaceFile writes content atomically so a control plane never reloads
// a half-written policy.
func ReplaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Port is the port of a host:port address, as a policy names it.
func Port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// WasmDir builds (or reuses, with MAESTRO_WASM_DIR) the fanout and slo
// filters into a directory, outside any test deadline.
func WasmDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"fanout", "slo"} {
		b := wasmtest.Build(t, "github.com/maestro-ml/maestro/wasmfilter/"+f+"/cmd")
		if err := os.WriteFile(filepath.Join(dir, f+".wasm"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// WasmMesh is the Mesh document of the gateway tests' policies:
// plaintext, with the fanout and slo filters built into wasm (WasmDir),
// followed by the document separator.
func WasmMesh(name, wasm string) string {
	return fmt.Sprintf(`apiVersion: maestro.dev/v1alpha1
kind: Mesh
metadata:
  name: %s
spec:
  mtls:
    mode: DISABLE
  filters:
    fanout:
      path: %[2]s/fanout.wasm
    slo:
      path: %[2]s/slo.wasm
---
`, name, wasm)
}

// FraudVersion is a version of service fraud and its server's address.
type FraudVersion struct{ Name, Addr string }

// FraudRoute is a route of service fraud: its name, which is also the
// model it matches, and the rest of its spec in YAML.
type FraudRoute struct{ Name, Spec string }

// FraudPolicy is a plaintext policy with the filters built into wasm
// (WasmMesh): service fraud (gRPC, namespace ml) with versions on loopback
// and routes, all behind gateway edge (gRPC, every host).
func FraudPolicy(wasm string, versions []FraudVersion, routes ...FraudRoute) string {
	var b strings.Builder
	b.WriteString(WasmMesh("gw", wasm))
	b.WriteString("apiVersion: maestro.dev/v1alpha1\nkind: Service\nmetadata: {name: fraud, namespace: ml}\nspec:\n  protocol: grpc\n  versions:\n")
	for _, v := range versions {
		fmt.Fprintf(&b, "    - {name: %s, endpoints: [{address: 127.0.0.1, port: %s}]}\n", v.Name, Port(v.Addr))
	}
	names := make([]string, len(routes))
	for i, r := range routes {
		names[i] = r.Name
		fmt.Fprintf(&b, "---\napiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata: {name: %s, namespace: ml}\nspec:\n  service: fraud\n  match: {model: %[1]s}\n", r.Name)
		for _, line := range strings.Split(strings.TrimSuffix(r.Spec, "\n"), "\n") {
			b.WriteString("  " + line + "\n")
		}
	}
	fmt.Fprintf(&b, "---\napiVersion: maestro.dev/v1alpha1\nkind: Gateway\nmetadata: {name: edge, namespace: ml}\n"+
		"spec: {port: 18080, protocol: grpc, hosts: [\"*\"], routes: [%s]}\n", strings.Join(names, ", "))
	return b.String()
}

// FilterPolicy routes model fraud to v1 with a compared shadow to
// logistic (model fraud-logistic) and SLO metering, and model
// fraud-ensemble to an ensemble of v1 and v2 (quorum 2, weighted mean),
// behind gateway edge with the filters built into dir.
func FilterPolicy(dir, v1, v2, logistic string) string {
	return FraudPolicy(dir, []FraudVersion{{"v1", v1}, {"v2", v2}, {"logistic", logistic}},
		FraudRoute{"fraud", `split: [{version: v1, weight: 100}]
shadow: {version: logistic, percentage: 100, compare: true, model: fraud-logistic}
timeout: 2s
` + sloSpec},
		FraudRoute{"fraud-ensemble", `ensemble:
  strategy: weighted_mean
  members:
    - {version: v1, model: fraud, weight: 1}
    - {version: v2, model: fraud, weight: 1}
  quorum: 2
  timeout: 1s
timeout: 2s
`})
}

// sloSpec is the SLO of the policies' metered routes.
const sloSpec = `slo:
  availability: 99.9
  latency: [{percentile: 99, threshold: 250ms}]
`

// SLOPolicy routes model fraud to v1's only version behind gateway edge,
// metered by the slo filter (built into dir) against 99.9% availability
// and a 250ms p99.
func SLOPolicy(dir, v1 string) string {
	return FraudPolicy(dir, []FraudVersion{{"v1", v1}}, FraudRoute{"fraud", "timeout: 2s\n" + sloSpec})
}
