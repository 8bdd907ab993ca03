package istio_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	extensionsv1alpha1 "istio.io/client-go/pkg/apis/extensions/v1alpha1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/maestro-ml/maestro/controlplane/istio"
)

// rendered holds every decoded document by kind, keyed by namespace/name.
type rendered struct {
	peer    map[string]*securityv1.PeerAuthentication
	authz   map[string]*securityv1.AuthorizationPolicy
	dr      map[string]*networkingv1.DestinationRule
	vs      map[string]*networkingv1.VirtualService
	plugins map[string]*extensionsv1alpha1.WasmPlugin
	filters map[string]*networkingv1alpha3.EnvoyFilter
	order   []string
}

// envelope is a document's outer shape, decoded strictly; the spec is
// decoded strictly by protojson into the client-go type's Spec, since the
// istio.io/api JSON unmarshalers allow unknown fields.
type envelope struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       json.RawMessage   `json:"spec"`
}

// decodeAll decodes a multi-document stream strictly into the official
// Istio types: unknown fields, unknown kinds and wrong API versions fail
// the test.
func decodeAll(t testing.TB, data []byte) *rendered {
	t.Helper()
	out := &rendered{
		peer: map[string]*securityv1.PeerAuthentication{}, authz: map[string]*securityv1.AuthorizationPolicy{},
		dr: map[string]*networkingv1.DestinationRule{}, vs: map[string]*networkingv1.VirtualService{},
		plugins: map[string]*extensionsv1alpha1.WasmPlugin{}, filters: map[string]*networkingv1alpha3.EnvoyFilter{},
	}
	for i, doc := range strings.Split(string(data), "\n---\n") {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		var env envelope
		if err := dec.Decode(&env); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		key := env.Metadata.Namespace + "/" + env.Metadata.Name
		if env.Metadata.Namespace == "" || env.Metadata.Name == "" {
			t.Fatalf("document %d (%s): missing name or namespace", i, env.Kind)
		}
		if got := env.Metadata.Labels[istio.ManagedByLabel]; got != "maestro" {
			t.Errorf("%s %s: label %s = %q, want maestro", env.Kind, key, istio.ManagedByLabel, got)
		}
		out.order = append(out.order, env.Kind+" "+key)
		var spec proto.Message
		wantAPI := ""
		switch env.Kind {
		case "PeerAuthentication":
			o := &securityv1.PeerAuthentication{ObjectMeta: env.Metadata}
			spec, wantAPI, out.peer[key] = &o.Spec, istio.SecurityAPIVersion, o
		case "AuthorizationPolicy":
			o := &securityv1.AuthorizationPolicy{ObjectMeta: env.Metadata}
			spec, wantAPI, out.authz[key] = &o.Spec, istio.SecurityAPIVersion, o
		case "DestinationRule":
			o := &networkingv1.DestinationRule{ObjectMeta: env.Metadata}
			spec, wantAPI, out.dr[key] = &o.Spec, istio.NetworkingAPIVersion, o
		case "VirtualService":
			o := &networkingv1.VirtualService{ObjectMeta: env.Metadata}
			spec, wantAPI, out.vs[key] = &o.Spec, istio.NetworkingAPIVersion, o
		case "WasmPlugin":
			o := &extensionsv1alpha1.WasmPlugin{ObjectMeta: env.Metadata}
			spec, wantAPI, out.plugins[key] = &o.Spec, istio.ExtensionsAPIVersion, o
		case "EnvoyFilter":
			o := &networkingv1alpha3.EnvoyFilter{ObjectMeta: env.Metadata}
			spec, wantAPI, out.filters[key] = &o.Spec, istio.NetworkingAlphaAPIVersion, o
		default:
			t.Fatalf("document %d: unexpected kind %q", i, env.Kind)
		}
		if env.APIVersion != wantAPI {
			t.Errorf("%s %s: apiVersion %q, want %q", env.Kind, key, env.APIVersion, wantAPI)
		}
		if err := protojson.Unmarshal(env.Spec, spec); err != nil {
			t.Fatalf("%s %s: spec: %v", env.Kind, key, err)
		}
	}
	return out
}

func TestDecodeAllRejectsUnknownFields(t *testing.T) {
	for name, doc := range map[string]string{
		"spec field":     "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: b}\nspec: {hostz: [x]}\n",
		"metadata field": "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: b, nam: c}\nspec: {}\n",
		"nested field":   "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a, namespace: b}\nspec: {host: h, subsets: [{name: v1, label: {}}]}\n",
	} {
		t.Run(name, func(t *testing.T) {
			ft := &fakeT{TB: t}
			func() {
				defer func() { _ = recover() }()
				decodeAll(ft, []byte(doc))
			}()
			if !ft.failed {
				t.Errorf("decodeAll accepted %q", doc)
			}
		})
	}
}

// fakeT records failures instead of failing, so the decoder's own
// strictness can be tested; Fatalf unwinds with a panic as FailNow would.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Errorf(string, ...any) { f.failed = true }
func (f *fakeT) Fatalf(string, ...any) { f.failed = true; panic(f) }
