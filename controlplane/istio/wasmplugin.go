package istio

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
	extensions "istio.io/api/extensions/v1alpha1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/xds"
)

// WasmPluginName is the name of the WasmPlugin loading filter kind k.
func WasmPluginName(k model.FilterKind) string { return "maestro-" + string(k) }

// wasmPlugins renders a mesh-wide WasmPlugin per filter some route needs.
// The filters run on the client side, where the VirtualServices route, so
// their route and cluster names are the VirtualService route names and
// Istio's outbound cluster names. The fanout filter goes in the AUTHN
// phase, ahead of the slo filter in STATS, the order the native control
// plane uses.
func (r *renderer) wasmPlugins(routes []model.Route) ([]Resource, error) {
	rc := &model.RouteConfig{Name: "istio", VirtualHosts: []model.VirtualHost{{Name: "istio", Domains: []string{"*"}, Routes: routes}}}
	var fanout, slo bool
	for _, rt := range routes {
		fanout = fanout || rt.Action.Fanout != nil || slices.ContainsFunc(rt.Action.Mirrors, func(m model.Mirror) bool { return m.Compare })
		slo = slo || rt.Action.SLO != nil
	}
	fm := &r.pm.Config.Spec.Filters
	var out []Resource
	for _, f := range []struct {
		on    bool
		kind  model.FilterKind
		mod   *policy.WasmModule
		phase extensions.PluginPhase
	}{
		{fanout, model.FilterFanout, &fm.Fanout, extensions.PluginPhase_AUTHN},
		{slo, model.FilterSLO, &fm.SLO, extensions.PluginPhase_STATS},
	} {
		if !f.on {
			continue
		}
		conf, err := pluginConfiguration(f.kind, rc)
		if err != nil {
			return nil, err
		}
		if f.kind == model.FilterFanout && r.opts.FanoutStopIteration {
			ef, err := r.fanoutEnvoyFilter(conf, f.mod)
			if err != nil {
				return nil, err
			}
			out = append(out, ef)
			continue
		}
		st, err := jsonStruct(conf)
		if err != nil {
			return nil, fmt.Errorf("%s plugin configuration: %w", f.kind, err)
		}
		wp := &extensions.WasmPlugin{
			PluginName:   string(f.kind),
			PluginConfig: st,
			Phase:        f.phase,
			Match:        []*extensions.WasmPlugin_TrafficSelector{{Mode: typev1beta1.WorkloadMode_CLIENT}},
			// A broken filter must not take inference traffic down with it.
			FailStrategy: extensions.FailStrategy_FAIL_OPEN,
		}
		wp.Url, wp.Sha256 = r.wasmURL(f.mod, string(f.kind))
		out = append(out, Resource{APIVersion: ExtensionsAPIVersion, Kind: "WasmPlugin", Name: WasmPluginName(f.kind), Namespace: r.opts.RootNamespace, Spec: wp})
	}
	return out, nil
}

// wasmURL is where Istio fetches the module: its remote URL and digest,
// or file:// of a local path (a relative one is looked up in
// Options.WasmDir by base name).
func (r *renderer) wasmURL(m *policy.WasmModule, kind string) (url, sha string) {
	if m.Remote != nil {
		return m.Remote.URL, m.Remote.SHA256
	}
	p := m.Path
	if p == "" {
		p = kind + ".wasm"
	}
	if !path.IsAbs(p) {
		p = path.Join(r.opts.WasmDir, path.Base(p))
	}
	return "file://" + p, ""
}

// jsonStruct turns the filter's JSON into the Struct Istio hands back to
// the filter as JSON.
func jsonStruct(data []byte) (*structpb.Struct, error) {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	return structpb.NewStruct(m)
}

// pluginConfiguration is the filter's JSON as the native control plane
// builds it (xds.FanoutConfig, xds.SLOConfig), with each fanout callout's
// :authority set to its Istio host, which the callee's sidecar routes by.
// It leaves out the fanout filter's model routing (xds.ModelRoutingConfig):
// that holds requests in the request-headers callback, which Envoy allows
// only with the Wasm config's allow_on_headers_stop_iteration, and
// WasmPlugin has no field for it; under Istio, gRPC clients must send the
// model header themselves (docs/filters.md).
func pluginConfiguration(k model.FilterKind, rc *model.RouteConfig) ([]byte, error) {
	var conf interface{ Validate() error }
	switch k {
	case model.FilterFanout:
		f := xds.FanoutConfig(rc)
		for i := range f.Routes {
			r := &f.Routes[i]
			for j := range r.Members {
				r.Members[j].Authority = authority(r.Members[j].Cluster)
			}
			for j := range r.Shadows {
				r.Shadows[j].Authority = authority(r.Shadows[j].Cluster)
			}
		}
		conf = f
	case model.FilterSLO:
		conf = xds.SLOConfig(rc)
	default:
		return nil, fmt.Errorf("unknown filter kind %q", k)
	}
	if err := conf.Validate(); err != nil {
		return nil, fmt.Errorf("%s plugin configuration: %w", k, err)
	}
	return json.Marshal(conf)
}

// authority is host:port of an outbound|<port>|<subset>|<host> cluster.
func authority(cluster string) string {
	parts := strings.SplitN(cluster, "|", 4)
	if len(parts) != 4 {
		return ""
	}
	return parts[3] + ":" + parts[1]
}
