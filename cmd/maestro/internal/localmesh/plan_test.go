package localmesh

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

const planGRPC = `apiVersion: maestro.dev/v1alpha1
kind: Mesh
metadata: {name: plan}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud}
spec:
  protocol: grpc
  versions:
    - name: v1
      labels: {model: fraud}
      endpoints: [{address: 127.0.0.1, port: 9001}]
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud}
spec:
  service: fraud
  match: {model: fraud}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud-rest}
spec:
  service: fraud-rest
  match: {model: fraud}
---
apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud-rest}
spec:
  protocol: http
  versions:
    - name: v1
      labels: {%s}
      endpoints: [{address: 127.0.0.1, port: 9101}]
`

// TestPlanJoinsRESTVersionsToTheirServers: an http version labelled with a
// gRPC version's server is that server's REST port, not a server of its
// own; a label naming no server, or a second REST port, is refused.
func TestPlanJoinsRESTVersionsToTheirServers(t *testing.T) {
	tests := map[string]struct {
		labels  string
		want    []backend
		wantErr string
	}{
		"joined": {labels: "model: fraud, server: fraud-v1",
			want: []backend{{Service: "fraud", Version: "v1", Addr: "127.0.0.1:9001", HTTPAddr: "127.0.0.1:9101", Model: "fraud"}}},
		"own server": {labels: "model: fraud",
			want: []backend{
				{Service: "fraud", Version: "v1", Addr: "127.0.0.1:9001", Model: "fraud"},
				{Service: "fraud-rest", Version: "v1", HTTPAddr: "127.0.0.1:9101", Model: "fraud"},
			}},
		"unknown server": {labels: "model: fraud, server: fraud-v9", wantErr: `service fraud-rest version v1: label server: "fraud-v9" names no gRPC version's server`},
		"other model":    {labels: "model: churn, server: fraud-v1", wantErr: `label server: fraud-v1 serves model "fraud" version "", not "churn" version ""`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.yaml")
			if err := os.WriteFile(path, []byte(strings.Replace(planGRPC, "%s", tc.labels, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			mesh, err := policy.Load(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := plan(mesh)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				got[i].server = ""
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("backend %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestRouteSummaryOfTheDemo(t *testing.T) {
	mesh, err := policy.Load(context.Background(), "../../../../examples/mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for route, want := range map[string]string{
		"fraud":          "v1 90% / v2 10%, shadow 20% to logistic",
		"fraud-ensemble": "ensemble weighted_mean of v1, v2, logistic (quorum 2, adaptive weights)",
		"churn":          "v1 100%, rollout of v2 at 10/50/100% every 5s, rule try-v2",
	} {
		if got := routeSummary(mesh.Route(route)); got != want {
			t.Errorf("%s: %q, want %q", route, got, want)
		}
	}
}
