package istio_test

import (
	"context"
	"os"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/maestro-ml/maestro/controlplane/istio"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

const restGoldenPath = "../../examples/istio/mesh-rest.yaml"

// TestFanoutEnvoyFilterGolden keeps examples/istio/mesh-rest.yaml what
// `maestro istio render --fanout-stop-iteration` writes for the demo with
// its REST side, and checks that the fanout filter is there as an
// EnvoyFilter Envoy's own types accept: the whole ECDS config added, with
// allow_on_headers_stop_iteration set and the plugin configuration the
// WasmPlugin would carry, and a reference to it first in every sidecar's
// outbound HTTP filters.
func TestFanoutEnvoyFilterGolden(t *testing.T) {
	pm, err := policy.Load(context.Background(), demoPath, "../../examples/mesh-rest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := istio.Render(pm, istio.Options{FanoutStopIteration: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := istio.MarshalYAML(rs)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(restGoldenPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(restGoldenPath)
	if err != nil {
		t.Fatalf("%v (run go test ./controlplane/istio -run TestFanoutEnvoyFilterGolden -update)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s is stale: run go test ./controlplane/istio -run TestFanoutEnvoyFilterGolden -update", restGoldenPath)
	}
	r := decodeAll(t, want)
	checkReferences(t, r)
	if r.plugins["istio-system/maestro-slo"] == nil {
		t.Fatal("no slo WasmPlugin: the demo's SLOs were not rendered")
	}
	if r.plugins["istio-system/maestro-fanout"] != nil {
		t.Error("a fanout WasmPlugin beside the EnvoyFilter: the filter would run twice")
	}
	ef := r.filters["istio-system/maestro-fanout"]
	if ef == nil {
		t.Fatalf("no EnvoyFilter istio-system/maestro-fanout; rendered %v", r.order)
	}
	patches := ef.Spec.ConfigPatches
	if len(patches) != 2 {
		t.Fatalf("%d patches, want the extension config and the filter reference", len(patches))
	}

	ext, add := patches[0], patches[0].Patch
	if ext.ApplyTo != networking.EnvoyFilter_EXTENSION_CONFIG || add.Operation != networking.EnvoyFilter_Patch_ADD {
		t.Errorf("first patch %v %v, want EXTENSION_CONFIG ADD (Istio ignores any other operation there)", ext.ApplyTo, add.Operation)
	}
	var tec corev3.TypedExtensionConfig
	envoyValue(t, add.Value, &tec)
	var w wasmfilterv3.Wasm
	if err := tec.TypedConfig.UnmarshalTo(&w); err != nil {
		t.Fatalf("typed_config: %v", err)
	}
	if err := w.ValidateAll(); err != nil {
		t.Errorf("Envoy's validation rejects the Wasm config: %v", err)
	}
	c := w.Config
	if !proto.Equal(c.AllowOnHeadersStopIteration, wrapperspb.Bool(true)) {
		t.Errorf("allow_on_headers_stop_iteration %v, want true", c.AllowOnHeadersStopIteration)
	}
	if c.FailurePolicy != wasmv3.FailurePolicy_FAIL_OPEN || c.RootId != "fanout" {
		t.Errorf("failure policy %v, root id %q: want FAIL_OPEN and fanout", c.FailurePolicy, c.RootId)
	}
	if f, want := c.GetVmConfig().GetCode().GetLocal().GetFilename(), path.Join(policy.DefaultWasmDir, "fanout.wasm"); f != want {
		t.Errorf("module %q, want %s", f, want)
	}
	var conf wrapperspb.StringValue
	if err := c.Configuration.UnmarshalTo(&conf); err != nil {
		t.Fatalf("configuration: %v", err)
	}
	fo, err := filterconfig.ParseFanout([]byte(conf.Value))
	if err != nil {
		t.Fatalf("fanout configuration: %v", err)
	}
	if rest := fo.Route("fraud-ensemble-rest"); rest == nil || len(rest.Members) == 0 {
		t.Errorf("REST ensemble %+v, want its members", rest)
	}
	// The plugin configuration is the one the WasmPlugin carries.
	plain, err := istio.Render(pm, istio.Options{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := istio.MarshalYAML(plain)
	if err != nil {
		t.Fatal(err)
	}
	if wp := fanoutConfig(t, decodeAll(t, data)); !reflect.DeepEqual(wp, fo) {
		t.Errorf("the EnvoyFilter's fanout configuration differs from the WasmPlugin's")
	}

	ins := patches[1]
	if ins.ApplyTo != networking.EnvoyFilter_HTTP_FILTER || ins.Patch.Operation != networking.EnvoyFilter_Patch_INSERT_FIRST ||
		ins.Match.GetContext() != networking.EnvoyFilter_SIDECAR_OUTBOUND ||
		ins.Match.GetListener().GetFilterChain().GetFilter().GetName() != "envoy.filters.network.http_connection_manager" {
		t.Errorf("second patch %v, want HTTP_FILTER INSERT_FIRST in sidecar outbound connection managers", ins)
	}
	var hf hcmv3.HttpFilter
	envoyValue(t, ins.Patch.Value, &hf)
	if err := hf.ValidateAll(); err != nil {
		t.Errorf("Envoy's validation rejects the filter reference: %v", err)
	}
	cd := hf.GetConfigDiscovery()
	if hf.Name != tec.Name || cd.GetConfigSource().GetAds() == nil ||
		!slices.Equal(cd.GetTypeUrls(), []string{"type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"}) {
		t.Errorf("filter reference %v, want %q over ADS as a Wasm config", &hf, tec.Name)
	}
}

// envoyValue decodes a patch value strictly into Envoy's type m, as
// istiod does.
func envoyValue(t *testing.T, v *structpb.Struct, m proto.Message) {
	t.Helper()
	js, err := protojson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(js, m); err != nil {
		t.Fatalf("patch value as %T: %v", m, err)
	}
}

// TestFanoutEnvoyFilterRemoteModule: a remote module keeps its URL and
// digest, in a Wasm config Envoy's validation accepts, for Istio's agent
// to download.
func TestFanoutEnvoyFilterRemoteModule(t *testing.T) {
	const url = "https://wasm.example/fanout.wasm"
	sha := strings.Repeat("ab", 32)
	pm := load(t, strings.Replace(header, meshSpecEnd, meshSpecEnd+"  filters:\n    fanout:\n      remote: {url: \""+url+"\", sha256: "+sha+", service: web}\n", 1)+`kind: Route
apiVersion: maestro.dev/v1alpha1
metadata: {name: ens, namespace: ml}
spec:
  service: fraud
  match: {model: ens}
  ensemble: {members: [{version: v1}, {version: v2}]}
`)
	rs, err := istio.Render(pm, istio.Options{FanoutStopIteration: true})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(rs, func(r istio.Resource) bool { return r.Kind == "EnvoyFilter" })
	if i < 0 {
		t.Fatal("no EnvoyFilter rendered")
	}
	var tec corev3.TypedExtensionConfig
	envoyValue(t, rs[i].Spec.(*networking.EnvoyFilter).ConfigPatches[0].Patch.Value, &tec)
	var w wasmfilterv3.Wasm
	if err := tec.TypedConfig.UnmarshalTo(&w); err != nil {
		t.Fatal(err)
	}
	if err := w.ValidateAll(); err != nil {
		t.Errorf("Envoy's validation rejects the Wasm config: %v", err)
	}
	remote := w.GetConfig().GetVmConfig().GetCode().GetRemote()
	if remote.GetHttpUri().GetUri() != url || remote.GetSha256() != sha {
		t.Errorf("remote code %v, want %s with its digest", remote, url)
	}
}
