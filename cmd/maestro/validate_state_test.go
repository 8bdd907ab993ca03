package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/rollout"
)

const canaryPolicy = `apiVersion: maestro.dev/v1alpha1
kind: Mesh
metadata: {name: m}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud}
spec:
  versions:
    - {name: v1, endpoints: [{address: 127.0.0.1, port: 9001}]}
    - {name: v2, endpoints: [{address: 127.0.0.1, port: 9002}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud}
spec:
  service: fraud
  split: [{version: v1, weight: 100}]
  rollout: {version: v2}
`

func TestValidateOutputShowsRolloutWeights(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(path, []byte(canaryPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	// A controller's first tick records the rollout at its first step.
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	pm, err := policy.Load(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rollout.New(rollout.Config{StateDir: state, Identity: "cp"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Tick(context.Background(), pm); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for name, tc := range map[string]struct {
		dir            string
		stdout, stderr []string
		code           int
	}{
		"recorded rollout": {dir: state, stdout: []string{`"weight": 95`, `"weight": 5`},
			stderr: []string{"route fraud served with rollout weights v1=95 (policy 100) v2=5 (policy 0), progressing step 1/4", "adaptive ensemble weights live in the running control plane"}},
		"no state":          {dir: empty, stdout: []string{`"cluster": "fraud.v1"`}, stderr: []string{"no rollout of this policy is recorded in " + empty}},
		"missing directory": {dir: filepath.Join(dir, "nope"), stdout: []string{`"cluster": "fraud.v1"`}, stderr: []string{"the policy's own weights are shown: rollout state directory"}},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"validate", "-f", path, "--output", "json", "--node", "c", "--role", "proxyless", "--state-dir", tc.dir}, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%.2000s", w, stdout.String())
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}
