package xds_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/xds"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/out")

// goldenCases are the meshes whose xDS is kept under testdata/out, one
// file per case and xDS type, each a JSON object keyed by node group: the
// IR sample, every policy under testdata/in, and every example policy of
// the repository (examples/mesh.yaml, examples/policies/*.yaml,
// examples/k8s/policy.yaml), so no example can rot.
func goldenCases(t *testing.T) map[string]*model.Mesh {
	t.Helper()
	cases := map[string]*model.Mesh{"sample": modeltest.Sample(9000)}
	inputs, err := filepath.Glob(filepath.Join("testdata", "in", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range inputs {
		cases[strings.TrimSuffix(filepath.Base(in), ".yaml")] = fromPolicy(t, in)
	}
	examples, err := filepath.Glob(filepath.Join("..", "..", "examples", "policies", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range examples {
		cases["example-"+strings.TrimSuffix(filepath.Base(ex), ".yaml")] = fromPolicy(t, ex)
	}
	cases["example-mesh"] = fromPolicy(t, filepath.Join("..", "..", "examples", "mesh.yaml"))
	cases["example-k8s"] = fromPolicy(t, filepath.Join("..", "..", "examples", "k8s", "policy.yaml"))
	return cases
}

// fromPolicy loads and converts a policy file, with stand-in TLS material
// for the secrets STRICT mTLS needs (their bytes only matter to the SDS
// golden file).
func fromPolicy(t *testing.T, path string) *model.Mesh {
	t.Helper()
	pm, err := policy.Load(context.Background(), path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	var secrets []model.Secret
	for _, name := range model.RequiredSecrets(pm) {
		if name == model.TrustBundleSecret {
			secrets = append(secrets, model.Secret{Name: name, TrustBundle: []byte("test bundle\n")})
			continue
		}
		secrets = append(secrets, model.Secret{Name: name, Certificate: &model.Certificate{
			ChainPEM: []byte("test chain of " + name + "\n"), KeyPEM: []byte("test key of " + name + "\n")}})
	}
	// Observations go where the control plane's admin port listens by
	// default; only adaptive ensembles (testdata/in/adaptive.yaml) use it.
	observer := &model.Observer{Endpoint: model.Endpoint{Address: "127.0.0.1", Port: 18001}, Percent: 100}
	m, err := model.Build(pm, model.BuildOptions{Secrets: secrets, Observer: observer})
	if err != nil {
		t.Fatalf("build %s: %v", path, err)
	}
	return m
}

func TestGolden(t *testing.T) {
	want := map[string]bool{}
	for name, m := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			files := render(t, name, m)
			for file, got := range files {
				want[file] = true
				compareGolden(t, filepath.Join("testdata", "out", file), got)
			}
		})
	}
	// A golden file without a case would rot unnoticed.
	existing, err := filepath.Glob(filepath.Join("testdata", "out", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range existing {
		if !want[filepath.Base(f)] {
			if *update {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("%s has no golden case; run go test -update to remove it", f)
		}
	}
}

// render returns the golden files of case name: file name -> contents.
func render(t *testing.T, name string, m *model.Mesh) map[string][]byte {
	t.Helper()
	byType := map[string]map[string]json.RawMessage{}
	for _, g := range m.Groups {
		res, err := xds.ForGroup(m, g.Name)
		if err != nil {
			t.Fatalf("ForGroup(%q) = %v", g.Name, err)
		}
		checkPluginConfigs(t, res)
		for _, typ := range xds.Types() {
			items := res.Items[typ]
			if len(items) == 0 {
				continue
			}
			b, err := xds.RenderJSON(items)
			if err != nil {
				t.Fatal(err)
			}
			tn := xds.TypeName(typ)
			if byType[tn] == nil {
				byType[tn] = map[string]json.RawMessage{}
			}
			byType[tn][g.Name] = b
		}
	}
	out := map[string][]byte{}
	for typ, groups := range byType {
		b, err := json.MarshalIndent(groups, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		out[name+"."+typ+".json"] = append(b, '\n')
	}
	return out
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the generated output (run go test -update and review the diff):\n%s", path, firstDiff(string(want), string(got)))
	}
}

// firstDiff shows the first differing line, enough to see what moved.
func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) && i < len(gl); i++ {
		if wl[i] != gl[i] {
			return "line " + strconv.Itoa(i+1) + ":\n- " + wl[i] + "\n+ " + gl[i]
		}
	}
	return "length differs"
}

// checkPluginConfigs parses every wasm filter's plugin configuration with
// the filter's own strict parser, as the filter does when Envoy configures
// it: what the control plane sends must be what the filter accepts.
func checkPluginConfigs(t *testing.T, res *xds.Resources) {
	t.Helper()
	for _, r := range res.Items[resource.ExtensionConfigType] {
		ec := r.(*corev3.TypedExtensionConfig)
		var w wasmfilterv3.Wasm
		if err := ec.GetTypedConfig().UnmarshalTo(&w); err != nil {
			t.Fatalf("%s: %v", ec.Name, err)
		}
		var conf wrapperspb.StringValue
		if err := w.GetConfig().GetConfiguration().UnmarshalTo(&conf); err != nil {
			t.Fatalf("%s: %v", ec.Name, err)
		}
		var err error
		switch w.GetConfig().GetRootId() {
		case string(model.FilterFanout):
			_, err = filterconfig.ParseFanout([]byte(conf.Value))
		case string(model.FilterSLO):
			_, err = filterconfig.ParseSLO([]byte(conf.Value))
		default:
			t.Fatalf("%s: unknown root id %q", ec.Name, w.GetConfig().GetRootId())
		}
		if err != nil {
			t.Errorf("%s: the filter rejects its configuration: %v", ec.Name, err)
		}
	}
}
