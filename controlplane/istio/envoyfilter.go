package istio

import (
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/xds"
)

// NetworkingAlphaAPIVersion is the API version of EnvoyFilter.
const NetworkingAlphaAPIVersion = "networking.istio.io/v1alpha3"

// agentFetch names the cluster of a remote module's http_uri, which
// Envoy requires but never uses here: Istio's agent downloads every ECDS
// Wasm module with remote code itself and hands Envoy a local file
// (istio pkg/wasm, as for WasmPlugins).
const agentFetch = "maestro-wasm-fetched-by-istio-agent"

// hcmFilter is the network filter whose HTTP filter chain the fanout
// filter joins.
const hcmFilter = "envoy.filters.network.http_connection_manager"

// fanoutEnvoyFilter renders the fanout filter as an EnvoyFilter rather than
// a WasmPlugin, for Options.FanoutStopIteration: WasmPlugin has no field
// for the Wasm config's allow_on_headers_stop_iteration, and Istio's
// EXTENSION_CONFIG patches only ADD configs (a MERGE into the one a
// WasmPlugin generates is ignored), so the EnvoyFilter adds the whole ECDS
// config, built as the native control plane builds it (xds.WasmConfig),
// and inserts a reference to it first in every sidecar's outbound HTTP
// filter chain, ahead of the slo WasmPlugin as the AUTHN phase would put
// it.
func (r *renderer) fanoutEnvoyFilter(conf []byte, mod *policy.WasmModule) (Resource, error) {
	name := WasmPluginName(model.FilterFanout)
	url, sha := r.wasmURL(mod, string(model.FilterFanout))
	code := model.WasmCode{URL: url, SHA256: sha, Cluster: agentFetch}
	if mod.Remote == nil {
		// A local module is a path in the proxy, not a file:// URL.
		code = model.WasmCode{Path: strings.TrimPrefix(url, "file://")}
	}
	w, err := xds.WasmConfig(model.WasmFilter{Name: name, Kind: model.FilterFanout, Code: code}, conf)
	if err != nil {
		return Resource{}, fmt.Errorf("fanout envoy filter: %w", err)
	}
	// A broken filter must not take inference traffic down with it, as
	// the WasmPlugin's FAIL_OPEN says.
	w.Config.FailurePolicy = wasmv3.FailurePolicy_FAIL_OPEN
	typed, err := anypb.New(w)
	if err != nil {
		return Resource{}, fmt.Errorf("fanout envoy filter: %w", err)
	}
	ext, err := protoStruct(&corev3.TypedExtensionConfig{Name: name, TypedConfig: typed})
	if err != nil {
		return Resource{}, fmt.Errorf("fanout envoy filter: %w", err)
	}
	ref, err := protoStruct(xds.DiscoveredWasmFilter(name))
	if err != nil {
		return Resource{}, fmt.Errorf("fanout envoy filter: %w", err)
	}
	spec := &networkingv1alpha3.EnvoyFilter{ConfigPatches: []*networkingv1alpha3.EnvoyFilter_EnvoyConfigObjectPatch{
		{
			ApplyTo: networkingv1alpha3.EnvoyFilter_EXTENSION_CONFIG,
			Patch:   &networkingv1alpha3.EnvoyFilter_Patch{Operation: networkingv1alpha3.EnvoyFilter_Patch_ADD, Value: ext},
		},
		{
			ApplyTo: networkingv1alpha3.EnvoyFilter_HTTP_FILTER,
			Match: &networkingv1alpha3.EnvoyFilter_EnvoyConfigObjectMatch{
				Context: networkingv1alpha3.EnvoyFilter_SIDECAR_OUTBOUND,
				ObjectTypes: &networkingv1alpha3.EnvoyFilter_EnvoyConfigObjectMatch_Listener{Listener: &networkingv1alpha3.EnvoyFilter_ListenerMatch{
					FilterChain: &networkingv1alpha3.EnvoyFilter_ListenerMatch_FilterChainMatch{
						Filter: &networkingv1alpha3.EnvoyFilter_ListenerMatch_FilterMatch{Name: hcmFilter},
					},
				}},
			},
			Patch: &networkingv1alpha3.EnvoyFilter_Patch{Operation: networkingv1alpha3.EnvoyFilter_Patch_INSERT_FIRST, Value: ref},
		},
	}}
	return Resource{APIVersion: NetworkingAlphaAPIVersion, Kind: "EnvoyFilter", Name: name, Namespace: r.opts.RootNamespace, Spec: spec}, nil
}

// protoStruct is m as the Struct an EnvoyFilter patch carries: its
// protojson form under Envoy's field names (snake_case, as Envoy's
// documentation writes them).
func protoStruct(m proto.Message) (*structpb.Struct, error) {
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	return jsonStruct(js)
}
