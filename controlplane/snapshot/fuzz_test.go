package snapshot_test

import (
	"testing"

	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
	"github.com/maestro-ml/maestro/controlplane/snapshot"
)

// FuzzTranslate feeds the translator meshes with fuzzed names, matches,
// addresses, weights and percentages: whatever the model holds, Translate
// returns an error or consistent snapshots, and never panics (the server
// translates on every policy change).
func FuzzTranslate(f *testing.F) {
	f.Add("x-maestro-model", "/v2/models/fraud/", "127.0.0.1", "fraud.v1", uint32(9000), uint32(90), 5.0, uint8(0))
	f.Add("bad header\n", "", "", "", uint32(0), uint32(0), 101.0, uint8(1))
	f.Add("\xff", "no-slash", "::1", "ghost", uint32(70000), uint32(1<<31), -1.0, uint8(2))
	f.Add("x", "/", "host.example", "churn.v1", uint32(1), uint32(1), 0.0001, uint8(3))
	f.Fuzz(func(t *testing.T, header, prefix, address, cluster string, port, weight uint32, percent float64, which uint8) {
		m := modeltest.Sample(9000)
		gw := &m.Group(modeltest.GatewayGroup).Listeners[0]
		routes := gw.Routes.VirtualHosts[0].Routes
		r := &routes[int(which)%len(routes)]
		if len(r.Match.Headers) > 0 {
			r.Match.Headers[0].Name = header
		}
		if r.Match.Prefix != "" {
			r.Match.Prefix = prefix
		}
		r.Action.Clusters[0].Name = cluster
		r.Action.Clusters[0].Weight = weight
		if len(r.Action.Mirrors) > 0 {
			r.Action.Mirrors[0].Percent = percent
		}
		c := &m.Clusters[int(which)%len(m.Clusters)]
		c.Localities[0].Endpoints[0].Address = address
		c.Localities[0].Endpoints[0].Port = port
		px := &m.Group(modeltest.ProxylessGroup).Listeners[0]
		px.Routes.VirtualHosts[0].Domains = []string{header}
		m.Normalize()

		set, err := snapshot.Translate(m)
		if err != nil {
			return
		}
		for name, snap := range set.Snapshots {
			if err := snap.Consistent(); err != nil {
				t.Fatalf("%s: a set returned without error is inconsistent: %v", name, err)
			}
		}
	})
}
