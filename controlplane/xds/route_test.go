package xds_test

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
	"github.com/maestro-ml/maestro/controlplane/xds"
)

func TestRouteConfiguration(t *testing.T) {
	rc := &model.RouteConfig{Name: "gateway-http", VirtualHosts: []model.VirtualHost{
		{Name: "churn", Domains: []string{"churn.example"}, Routes: []model.Route{{
			Name:   "churn",
			Match:  model.RouteMatch{Prefix: "/"},
			Action: model.RouteAction{Clusters: []model.WeightedCluster{{Name: "churn.v1", Weight: 1}}, Timeout: time.Second},
		}}},
		{Name: "fraud", Domains: []string{"*"}, Routes: []model.Route{
			{
				Name:   "fraud-health",
				Match:  model.RouteMatch{Path: "/v2/health/ready"},
				Action: model.RouteAction{Clusters: []model.WeightedCluster{{Name: "fraud.v1", Weight: 1}}},
			},
			{
				Name:  "fraud",
				Match: model.RouteMatch{SeparatedPrefix: "/v2/models/fraud"},
				Action: model.RouteAction{Clusters: []model.WeightedCluster{{Name: "fraud.v1", Weight: 1}},
					Mirrors: []model.Mirror{{Cluster: "fraud.v2", Percent: 50}}},
			},
		}},
	}}
	toCluster := func(name string) *routev3.Route_Route {
		return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}}
	}
	mirror := []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "fraud.v2", RuntimeFraction: &corev3.RuntimeFractionalPercent{
		DefaultValue: &typev3.FractionalPercent{Numerator: 500_000, Denominator: typev3.FractionalPercent_MILLION}}}}
	health := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/v2/health/ready"}}
	modelPath := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/v2/models/fraud"}}
	// want builds the expected configuration from the three routes' forms.
	want := func(churn, fraudHealth, fraud *routev3.Route) *routev3.RouteConfiguration {
		return &routev3.RouteConfiguration{Name: "gateway-http", VirtualHosts: []*routev3.VirtualHost{
			{Name: "churn", Domains: []string{"churn.example"}, Routes: []*routev3.Route{churn}},
			{Name: "fraud", Domains: []string{"*"}, Routes: []*routev3.Route{fraudHealth, fraud}},
		}}
	}
	prefix := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	served := &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}}
	tests := map[string]struct {
		build func() (*routev3.RouteConfiguration, error)
		want  *routev3.RouteConfiguration
	}{
		"envoy: timeouts and mirrors": {
			build: func() (*routev3.RouteConfiguration, error) { return xds.RouteConfiguration(rc, false) },
			want: want(
				&routev3.Route{Name: "churn", Match: prefix, Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "churn.v1"}, Timeout: durationpb.New(time.Second)}}},
				&routev3.Route{Name: "fraud-health", Match: health, Action: toCluster("fraud.v1")},
				&routev3.Route{Name: "fraud", Match: modelPath, Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "fraud.v1"}, RequestMirrorPolicies: mirror}}},
			),
		},
		"proxyless client: max stream durations, no mirrors": {
			build: func() (*routev3.RouteConfiguration, error) { return xds.RouteConfiguration(rc, true) },
			want: want(
				&routev3.Route{Name: "churn", Match: prefix, Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "churn.v1"}, Timeout: durationpb.New(time.Second),
					MaxStreamDuration: &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(time.Second)}}}},
				&routev3.Route{Name: "fraud-health", Match: health, Action: toCluster("fraud.v1")},
				&routev3.Route{Name: "fraud", Match: modelPath, Action: toCluster("fraud.v1")},
			),
		},
		"gRPC server: every route served locally": {
			build: func() (*routev3.RouteConfiguration, error) { return xds.ServerRouteConfiguration(rc) },
			want: want(
				&routev3.Route{Name: "churn", Match: prefix, Action: served},
				&routev3.Route{Name: "fraud-health", Match: health, Action: served},
				&routev3.Route{Name: "fraud", Match: modelPath, Action: served},
			),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			diff(t, tc.want, got)
		})
	}
}

// TestRouteConfigurationIsWhatGroupsGet checks that translation composes
// the pure builder: every RDS resource a group receives, with or without a
// cache and after a change, equals ListenerRouteConfiguration of its
// listener.
func TestRouteConfigurationIsWhatGroupsGet(t *testing.T) {
	c := xds.NewCache()
	for _, m := range []*model.Mesh{modeltest.Sample(9000), modeltest.Sample(9100), modeltest.Large(4, 8)} {
		for _, g := range m.Groups {
			want := map[string]*model.Listener{}
			for i := range g.Listeners {
				if l := &g.Listeners[i]; !l.InlineRoutes() {
					want[l.Routes.Name] = l
				}
			}
			cold, err := xds.ForGroup(m, g.Name)
			if err != nil {
				t.Fatal(err)
			}
			cached, err := c.ForGroup(m, g.Name)
			if err != nil {
				t.Fatal(err)
			}
			for _, res := range []*xds.Resources{cold, cached} {
				routes := res.Items[resource.RouteType]
				if len(routes) != len(want) {
					t.Fatalf("group %s: %d route configurations, want %d", g.Name, len(routes), len(want))
				}
				for _, r := range routes {
					got := r.(*routev3.RouteConfiguration)
					l, ok := want[got.GetName()]
					if !ok {
						t.Fatalf("group %s: unexpected route configuration %q", g.Name, got.GetName())
					}
					pure, err := xds.ListenerRouteConfiguration(l)
					if err != nil {
						t.Fatal(err)
					}
					diff(t, pure, got)
				}
			}
		}
		c.Sweep()
	}
}
