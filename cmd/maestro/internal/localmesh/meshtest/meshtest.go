// Package meshtest writes the small policies that tests of the local mesh
// run: model fraud served by local inference servers, with free loopback
// ports, so every test builds its mesh the same way.
package meshtest

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// FreePorts reserves n loopback ports and releases them for the servers a
// test starts; the window in which another process could take one is tiny.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// Fraud is a policy routing model fraud to version v1 (fraud model version
// 1) and, when V2Port is set, to v2 (version 2) by weight.
type Fraud struct {
	Name     string // the Mesh document's name
	CADir    string // the built-in CA's state directory
	V1Port   int
	V2Port   int           // 0: no v2
	V1Weight int           // v1's share in percent when there is a v2
	Timeout  time.Duration // the route's timeout; 0 leaves the default
	// Extra is appended as further YAML documents.
	Extra string
}

// YAML renders the policy.
func (f Fraud) YAML() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: maestro.dev/v1alpha1
kind: Mesh
metadata: {name: %s}
spec:
  ca:
    issuer: builtin
    builtin: {stateDir: %s}
---
apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud}
spec:
  protocol: grpc
  versions:
    - name: v1
      labels: {model: fraud, modelVersion: "1"}
      endpoints: [{address: 127.0.0.1, port: %d}]
`, f.Name, f.CADir, f.V1Port)
	if f.V2Port != 0 {
		fmt.Fprintf(&b, `    - name: v2
      labels: {model: fraud, modelVersion: "2"}
      endpoints: [{address: 127.0.0.1, port: %d}]
`, f.V2Port)
	}
	b.WriteString(`---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud}
spec:
  service: fraud
  match: {model: fraud}
`)
	if f.Timeout > 0 {
		fmt.Fprintf(&b, "  timeout: %dms\n", f.Timeout.Milliseconds())
	}
	if f.V2Port != 0 {
		fmt.Fprintf(&b, "  split:\n    - {version: v1, weight: %d}\n    - {version: v2, weight: %d}\n", f.V1Weight, 100-f.V1Weight)
	}
	if f.Extra != "" {
		b.WriteString("---\n")
		b.WriteString(f.Extra)
	}
	return []byte(b.String())
}

// Write writes the policy to path through a rename, so a watcher never
// reads half a file.
func (f Fraud) Write(t testing.TB, path string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, f.YAML(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
