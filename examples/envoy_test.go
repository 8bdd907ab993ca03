package examples_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/maestro-ml/maestro/controlplane/bootstrap"
	"github.com/maestro-ml/maestro/controlplane/model"
)

var update = flag.Bool("update", false, "rewrite the generated example files")

// TestEnvoyBootstrapsMatchTheGenerator keeps examples/envoy equal to what
// maestro up and maestro bootstrap write, and checks each one is a valid
// Envoy bootstrap.
func TestEnvoyBootstrapsMatchTheGenerator(t *testing.T) {
	cases := map[string]bootstrap.Config{
		"gateway-edge.yaml":  {NodeID: model.GatewayGroupName("edge"), Role: model.RoleGateway, AdminAddr: "127.0.0.1:9901"},
		"sidecar-churn.yaml": {NodeID: model.SidecarGroupName("churn"), Role: model.RoleSidecar, Service: "churn", AdminAddr: "127.0.0.1:9902"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			c.XDSAddr = "127.0.0.1:18000"
			want, err := bootstrap.EnvoyYAML(c)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("envoy", name)
			if *update {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./examples -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the generator's output (run go test ./examples -update)", path)
			}
			js, err := yaml.YAMLToJSON(got)
			if err != nil {
				t.Fatal(err)
			}
			var b bootstrapv3.Bootstrap
			if err := protojson.Unmarshal(js, &b); err != nil {
				t.Fatalf("%s is not an Envoy bootstrap: %v", path, err)
			}
			if err := b.ValidateAll(); err != nil {
				t.Errorf("%s: %v", path, err)
			}
			if b.GetNode().GetId() != c.NodeID {
				t.Errorf("%s: node %q, want %q", path, b.GetNode().GetId(), c.NodeID)
			}
		})
	}
}
