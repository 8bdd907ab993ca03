package xds_test

import (
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
	"github.com/maestro-ml/maestro/controlplane/xds"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

// A gateway takes REST (HTTP/1.1) and gRPC (h2c) on one port whatever its
// routes speak; only HTTP/2-only listeners get the HTTP2 codec.
func TestConnectionManagerCodec(t *testing.T) {
	tests := map[string]struct {
		kind     model.ListenerKind
		protocol model.Protocol
		want     hcmv3.HttpConnectionManager_CodecType
	}{
		"grpc gateway":    {model.ListenerGateway, model.ProtocolGRPC, hcmv3.HttpConnectionManager_AUTO},
		"http gateway":    {model.ListenerGateway, model.ProtocolHTTP, hcmv3.HttpConnectionManager_AUTO},
		"grpc inbound":    {model.ListenerInbound, model.ProtocolGRPC, hcmv3.HttpConnectionManager_HTTP2},
		"http inbound":    {model.ListenerInbound, model.ProtocolHTTP, hcmv3.HttpConnectionManager_AUTO},
		"outbound":        {model.ListenerOutbound, model.ProtocolHTTP, hcmv3.HttpConnectionManager_AUTO},
		"proxyless (api)": {model.ListenerAPI, model.ProtocolGRPC, hcmv3.HttpConnectionManager_HTTP2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l := &model.Listener{Name: "l", Kind: tc.kind, Protocol: tc.protocol, Routes: model.RouteConfig{Name: "l"}}
			hcm, err := xds.ConnectionManager(l, nil)
			if err != nil {
				t.Fatal(err)
			}
			if hcm.CodecType != tc.want {
				t.Errorf("codec %v, want %v", hcm.CodecType, tc.want)
			}
		})
	}
}

// The fanout filter pauses in its request-headers callback, which only
// works in Envoy with allow_on_headers_stop_iteration; the slo filter never
// pauses and keeps Envoy's default.
func TestFilterConfigStopIteration(t *testing.T) {
	res, err := xds.ForGroup(modeltest.Sample(9000), "gateway")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*corev3.TypedExtensionConfig{}
	for _, r := range res.Items[resource.ExtensionConfigType] {
		ec := r.(*corev3.TypedExtensionConfig)
		byName[ec.Name] = ec
	}
	for name, want := range map[string]bool{"gateway-http.fanout": true, "gateway-http.slo": false} {
		t.Run(name, func(t *testing.T) {
			ec := byName[name]
			if ec == nil {
				t.Fatalf("no extension config %q", name)
			}
			w := &wasmfilterv3.Wasm{}
			if err := ec.TypedConfig.UnmarshalTo(w); err != nil {
				t.Fatal(err)
			}
			flag := w.GetConfig().GetAllowOnHeadersStopIteration()
			if got := flag != nil && flag.Value; got != want || (!want && flag != nil) {
				t.Errorf("allow_on_headers_stop_iteration %v, want %v (set only when true)", flag, want)
			}
		})
	}
}

// request is what a standard OIP client sends, as route matching sees it.
type request struct {
	path    string
	grpc    bool
	headers map[string]string
}

// TestStandardClientRoutes checks which route of the oip-clients gateway
// the requests of unmodified Triton/KServe clients select, with the model
// header only where the fanout filter sets it (gRPC) and none for REST.
func TestStandardClientRoutes(t *testing.T) {
	m := fromPolicy(t, filepath.Join("testdata", "in", "oip-clients.yaml"))
	res, err := xds.ForGroup(m, model.GatewayGroupName("edge"))
	if err != nil {
		t.Fatal(err)
	}
	routes := res.Items[resource.RouteType]
	if len(routes) != 1 {
		t.Fatalf("%d route configurations, want 1", len(routes))
	}
	rc := routes[0].(*routev3.RouteConfiguration)
	modelHeader := func(name string) map[string]string { return map[string]string{"x-maestro-model": name} }
	tests := map[string]struct {
		req  request
		want string // route name; "" is no route (404)
	}{
		"grpc infer":             {request{"/inference.GRPCInferenceService/ModelInfer", true, modelHeader("fraud")}, "fraud"},
		"grpc ready":             {request{"/inference.GRPCInferenceService/ModelReady", true, modelHeader("fraud")}, "fraud"},
		"grpc metadata":          {request{"/inference.GRPCInferenceService/ModelMetadata", true, modelHeader("fraud")}, "fraud"},
		"grpc ensemble ready":    {request{"/inference.GRPCInferenceService/ModelReady", true, modelHeader("fraud-ensemble")}, "fraud-ensemble"},
		"grpc rule":              {request{"/inference.GRPCInferenceService/ModelInfer", true, map[string]string{"x-maestro-model": "fraud", "x-beta": "1"}}, "fraud.beta"},
		"grpc server live":       {request{"/inference.GRPCInferenceService/ServerLive", true, nil}, ""},
		"grpc without header":    {request{"/inference.GRPCInferenceService/ModelInfer", true, nil}, ""},
		"rest infer":             {request{"/v2/models/fraud/infer", false, nil}, "fraud-rest"},
		"rest metadata":          {request{"/v2/models/fraud", false, nil}, "fraud-rest"},
		"rest ready":             {request{"/v2/models/fraud/ready", false, nil}, "fraud-rest"},
		"rest version infer":     {request{"/v2/models/fraud/versions/2/infer", false, nil}, "fraud-rest"},
		"rest query string":      {request{"/v2/models/fraud?verbose=1", false, nil}, "fraud-rest"},
		"rest other model":       {request{"/v2/models/fraud-ensemble/infer", false, nil}, ""},
		"rest as grpc path only": {request{"/inference.GRPCInferenceService/ModelInfer", false, modelHeader("fraud")}, ""},
	}
	// The fanout filter's own copy of the gRPC model routes must agree with
	// Envoy's choice, since it applies that route's settings before the
	// router has picked it.
	mr := &filterconfig.Fanout{ModelRouting: xds.ModelRoutingConfig(&m.Group(model.GatewayGroupName("edge")).Listeners[0].Routes)}
	if err := mr.Validate(); err != nil || mr.ModelRouting == nil {
		t.Fatalf("model routing %+v: %v", mr.ModelRouting, err)
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := selectRoute(rc, tc.req); got != tc.want {
				t.Errorf("route %q, want %q", got, tc.want)
			}
			if name, ok := tc.req.headers["x-maestro-model"]; ok && tc.req.grpc && strings.HasPrefix(tc.req.path, model.OIPModelMethodPrefix) {
				lookup := func(h string) (string, bool) { v, ok := tc.req.headers[h]; return v, ok }
				if got := mr.ModelRouting.RouteFor(name, lookup); got != tc.want {
					t.Errorf("fanout filter's route %q, Envoy's %q", got, tc.want)
				}
			}
		})
	}
}

// selectRoute is Envoy's first-match route selection for the match fields
// the translator emits for gateways (path, prefix, path_separated_prefix,
// grpc, exact and present headers); it fails on any other.
func selectRoute(rc *routev3.RouteConfiguration, req request) string {
	path, _, _ := strings.Cut(req.path, "?")
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			m := r.Match
			var ok bool
			switch p := m.PathSpecifier.(type) {
			case *routev3.RouteMatch_Path:
				ok = path == p.Path
			case *routev3.RouteMatch_Prefix:
				ok = strings.HasPrefix(req.path, p.Prefix)
			case *routev3.RouteMatch_PathSeparatedPrefix:
				ok = path == p.PathSeparatedPrefix || strings.HasPrefix(path, p.PathSeparatedPrefix+"/")
			default:
				panic("unexpected path specifier " + r.Name)
			}
			if m.Grpc != nil && !req.grpc {
				ok = false
			}
			for _, h := range m.Headers {
				v, present := req.headers[h.Name]
				switch {
				case h.GetPresentMatch():
					ok = ok && present != h.InvertMatch
				case h.GetStringMatch().GetExact() != "":
					ok = ok && (present && v == h.GetStringMatch().GetExact()) != h.InvertMatch
				default:
					panic("unexpected header match in " + r.Name)
				}
			}
			if ok {
				return r.Name
			}
		}
	}
	return ""
}
