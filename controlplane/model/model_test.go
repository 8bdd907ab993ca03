package model_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
)

func TestSampleIsValid(t *testing.T) {
	if err := modeltest.Sample(9000).Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if err := modeltest.Large(100, 200).Validate(); err != nil {
		t.Fatalf("Large: Validate() = %v", err)
	}
}

func TestValidateErrors(t *testing.T) {
	tests := map[string]struct {
		edit func(m *model.Mesh)
		want []string
	}{
		"unknown cluster in split": {
			edit: func(m *model.Mesh) { gw(m).Routes.VirtualHosts[0].Routes[0].Action.Clusters[0].Name = "nope" },
			want: []string{`group "gateway" listener "gateway-http" virtual host "models" route "fraud": unknown cluster "nope"`},
		},
		"duplicate cluster": {
			edit: func(m *model.Mesh) { m.Clusters[1].Name = m.Clusters[0].Name },
			want: []string{`cluster "churn.v1": duplicate name`},
		},
		"unsorted clusters": {
			edit: func(m *model.Mesh) { m.Clusters[0], m.Clusters[1] = m.Clusters[1], m.Clusters[0] },
			want: []string{`not sorted`},
		},
		"path and prefix": {
			edit: func(m *model.Mesh) { gw(m).Routes.VirtualHosts[0].Routes[0].Match.Prefix = "/x" },
			want: []string{`route "fraud": exactly one of path, prefix and separatedPrefix must be set`},
		},
		"prefix and separated prefix": {
			edit: func(m *model.Mesh) {
				r := &gw(m).Routes.VirtualHosts[0].Routes[0]
				r.Match.Path, r.Match.Prefix, r.Match.SeparatedPrefix = "", "/v2/", "/v2/models/fraud"
			},
			want: []string{`route "fraud": exactly one of path, prefix and separatedPrefix must be set`},
		},
		"separated prefix with trailing slash": {
			edit: func(m *model.Mesh) {
				r := &gw(m).Routes.VirtualHosts[0].Routes[0]
				r.Match.Path, r.Match.Prefix, r.Match.SeparatedPrefix = "", "", "/v2/models/fraud/"
			},
			want: []string{`route "fraud": separatedPrefix "/v2/models/fraud/" must start with / and contain no trailing /, ? or #`},
		},
		"mirror percent": {
			edit: func(m *model.Mesh) { gw(m).Routes.VirtualHosts[0].Routes[0].Action.Mirrors[0].Percent = 101 },
			want: []string{`mirror fraud.v3: percent 101 outside [0, 100]`},
		},
		"unknown secret": {
			edit: func(m *model.Mesh) { m.Cluster("fraud.v1").TLS.TrustSecret = "gone" },
			want: []string{`cluster "fraud.v1": unknown secret "gone"`},
		},
		"secret with both": {
			edit: func(m *model.Mesh) { m.Secrets[1].Certificate = m.Secrets[0].Certificate },
			want: []string{`secret "trust-bundle": exactly one of certificate and trust bundle must be set`},
		},
		"bad port and header": {
			edit: func(m *model.Mesh) {
				gw(m).Port = 0
				gw(m).Routes.VirtualHosts[0].Routes[0].Match.Headers[0].Prefix = "f"
			},
			want: []string{"port 0 outside 1..65535", `header match "x-maestro-model" needs a name and exactly one of`},
		},
		"quorum above members": {
			edit: func(m *model.Mesh) { gw(m).Routes.VirtualHosts[0].Routes[3].Action.Fanout.Quorum = 3 },
			want: []string{`fanout: quorum 3 above 2 members`},
		},
		"fault abort without status": {
			edit: func(m *model.Mesh) { gw(m).Routes.VirtualHosts[0].Routes[2].Action.Fault.AbortHTTPStatus = 0 },
			want: []string{`fault: abort needs exactly one of an HTTP and a gRPC status`},
		},
		"filter code": {
			edit: func(m *model.Mesh) { gw(m).Filters[0].Code.URL = "https://x/f.wasm" },
			want: []string{`filter "gateway-http.fanout": exactly one of code path and URL must be set`},
		},
		"two compared shadows": {
			edit: func(m *model.Mesh) {
				a := &gw(m).Routes.VirtualHosts[0].Routes[0].Action
				a.Mirrors = append(a.Mirrors, model.Mirror{Cluster: "fraud.v2", Percent: 1, Compare: true})
			},
			want: []string{`route "fraud": 2 compared shadows`},
		},
		"duplicate route name": {
			edit: func(m *model.Mesh) { gw(m).Routes.VirtualHosts[0].Routes[1].Name = "fraud" },
			want: []string{`route "fraud": empty or duplicate route name`},
		},
		"grpc server matching SANs": {
			edit: func(m *model.Mesh) {
				m.Group(modeltest.GRPCServerGroup).Listeners[0].TLS.MatchSANs = []string{"spiffe://x"}
			},
			want: []string{"a gRPC server cannot match client SANs; use authorization rules"},
		},
		"grpc server route with a cluster": {
			edit: func(m *model.Mesh) {
				r := &m.Group(modeltest.GRPCServerGroup).Listeners[0].Routes.VirtualHosts[0].Routes[0]
				r.Action.Clusters = []model.WeightedCluster{{Name: "fraud.v1", Weight: 1}}
			},
			want: []string{`route "serve": a gRPC server serves requests itself; its routes name no clusters`},
		},
		"proxyless route to several endpoints with a host name": {
			edit: func(m *model.Mesh) { m.Cluster("fraud.v1").Localities[0].Endpoints[1].Address = "fraud-b.ml.svc" },
			want: []string{`group "proxyless" listener "fraud" virtual host "fraud" route "fraud": cluster "fraud.v1" has a host-name endpoint among 2 endpoints; proxyless gRPC accepts a host name only as a cluster's single endpoint (LOGICAL_DNS)`},
		},
		"tracing cluster": {
			edit: func(m *model.Mesh) { m.Tracing.Cluster = "none" },
			want: []string{`tracing: unknown cluster "none"`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := modeltest.Sample(9000)
			tc.edit(m)
			err := m.Validate()
			if !errors.Is(err, model.ErrInvalid) {
				t.Fatalf("Validate() = %v, want ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

// gw returns the gateway listener of the sample mesh.
func gw(m *model.Mesh) *model.Listener { return &m.Group(modeltest.GatewayGroup).Listeners[0] }

func TestGroupFor(t *testing.T) {
	m := modeltest.Sample(9000)
	m.Groups = append(m.Groups, model.NodeGroup{Name: "pinned", Nodes: model.NodeSelector{IDs: []string{"special"}}},
		model.NodeGroup{Name: "sidecar-any", Nodes: model.NodeSelector{Role: model.RoleSidecar}})
	m.Normalize()
	tests := map[string]struct {
		node   model.NodeInfo
		want   string
		wantOK bool
	}{
		"gateway by role":           {model.NodeInfo{ID: "gw-1", Role: model.RoleGateway}, modeltest.GatewayGroup, true},
		"sidecar by service":        {model.NodeInfo{ID: "fraud-1", Role: model.RoleSidecar, Service: "fraud"}, modeltest.SidecarGroup, true},
		"sidecar other service":     {model.NodeInfo{ID: "churn-1", Role: model.RoleSidecar, Service: "churn"}, "sidecar-any", true},
		"exact id wins over role":   {model.NodeInfo{ID: "special", Role: model.RoleGateway}, "pinned", true},
		"proxyless":                 {model.NodeInfo{ID: "client", Role: model.RoleProxyless}, modeltest.ProxylessGroup, true},
		"unknown role":              {model.NodeInfo{ID: "x", Role: "robot"}, "", false},
		"no role and an unknown id": {model.NodeInfo{ID: "x"}, "", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := m.GroupFor(tc.node)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("GroupFor(%+v) = %q, %v; want %q, %v", tc.node, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestHashAndEqual(t *testing.T) {
	a, b := modeltest.Sample(9000), modeltest.Sample(9000)
	if !a.Equal(b) || a.Hash() != b.Hash() {
		t.Fatalf("two identical meshes differ: %s vs %s", a.Hash(), b.Hash())
	}
	// Reordering and normalizing gives back the same content.
	b.Clusters[0], b.Clusters[3] = b.Clusters[3], b.Clusters[0]
	b.Normalize()
	if !a.Equal(b) {
		t.Errorf("normalized reorder changed the hash")
	}
	// A weight change is a content change.
	gw(b).Routes.VirtualHosts[0].Routes[0].Action.Clusters[0].Weight = 80
	if a.Equal(b) {
		t.Errorf("weight change not detected by Equal")
	}
	if a.Group(modeltest.SidecarGroup).Hash() != b.Group(modeltest.SidecarGroup).Hash() {
		t.Errorf("a gateway-only change altered the sidecar group's hash")
	}
	if !(*model.Mesh)(nil).Equal(nil) || a.Equal(nil) {
		t.Errorf("nil handling of Equal is wrong")
	}
}

func TestNormalizeKeepsRouteOrder(t *testing.T) {
	m := modeltest.Sample(9000)
	var names []string
	for _, r := range gw(m).Routes.VirtualHosts[0].Routes {
		names = append(names, r.Name)
	}
	if got, want := strings.Join(names, ","), "fraud,fraud-rest,churn,recs"; got != want {
		t.Errorf("route order after Normalize = %s, want %s", got, want)
	}
}

// TestHostNamesValid holds the host-name endpoints the model accepts:
// anything Envoy alone routes to, and a single one for proxyless gRPC.
func TestHostNamesValid(t *testing.T) {
	tests := map[string]func(m *model.Mesh){
		"envoy-only cluster with several": func(m *model.Mesh) {
			c := m.Cluster("fraud.v3")
			c.Localities[0].Endpoints = []model.Endpoint{{Address: "a.ml.svc", Port: 1}, {Address: "10.0.0.1", Port: 2}}
		},
		"proxyless cluster with one": func(m *model.Mesh) { m.Cluster("fraud.v2").Localities[0].Endpoints[0].Address = "localhost" },
	}
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			m := modeltest.Sample(9000)
			edit(m)
			if err := m.Validate(); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
		})
	}
}

func TestIsHostName(t *testing.T) {
	tests := map[string]bool{
		"10.0.0.1": false, "::1": false, "fe80::1%eth0": false, "": false,
		"localhost": true, "fraud-v1.ml.svc.cluster.local": true, "10.0.0.1.nip.io": true,
	}
	for addr, want := range tests {
		if got := (model.Endpoint{Address: addr}).IsHostName(); got != want {
			t.Errorf("IsHostName(%q) = %v, want %v", addr, got, want)
		}
	}
}
