package fanout_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/maestro-ml/maestro/wasmfilter/fanout"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/fanouttest"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// A recycled stream context keeps its message buffer and callout
// callbacks for the next fan-out: requests of different sizes in a row on
// one VM must get the answers a fresh VM gives each of them.
func TestReusedStreamsAnswerLikeFreshOnes(t *testing.T) {
	f := startFraud(t)
	mod := wasmtest.Load(t, fanouttest.Pkg)
	route := filterconfig.FanoutRoute{Route: "fraud", Members: f.routeMembers(true, fraudMembers[:2]...),
		Primary: grpcCluster("fraud.v1"), TimeoutMs: 10000}
	cfg, err := json.Marshal(filterconfig.Fanout{Routes: []filterconfig.FanoutRoute{route}})
	if err != nil {
		t.Fatal(err)
	}
	newVM := func() *wasmtest.VM {
		vm, err := mod.NewVM(context.Background(), wasmtest.Config{PluginConfig: cfg, Clusters: f.clusters,
			Properties: map[string][]byte{"xds.route_name": []byte("fraud")}, AllowOnHeadersStopIteration: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { vm.Close() })
		return vm
	}
	answer := func(vm *wasmtest.VM, rows int) *oip.Response {
		t.Helper()
		resp, err := vm.RoundTrip(context.Background(), grpcCluster("fraud.v1"), grpcRequest(t, "fraud", features(rows)))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 200 || resp.Trailer("grpc-status") != "0" {
			t.Fatalf("%d rows: status %d, grpc-status %q", rows, resp.Status, resp.Trailer("grpc-status"))
		}
		msg, err := oip.Unframe(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		r, err := oip.DecodeGRPCResponse(msg)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	reused := newVM()
	for i, rows := range []int{4, 1, 3, 1, 2} {
		got, want := answer(reused, rows), answer(newVM(), rows)
		if !reflect.DeepEqual(got.Outputs, want.Outputs) || got.ModelName != want.ModelName || got.ID != want.ID {
			t.Errorf("request %d (%d rows) on a reused context: %+v, a fresh VM answers %+v", i, rows, got, want)
		}
		if g, w := param(got, fanout.ParamMembers), param(want, fanout.ParamMembers); g != w || g == "" {
			t.Errorf("request %d: members parameter %q, a fresh VM gives %q", i, g, w)
		}
	}
}

func param(r *oip.Response, key string) string {
	for _, p := range r.Parameters {
		if p.Key == key {
			if s, ok := p.Value.(string); ok {
				return s
			}
			if s, ok := p.Value.(*string); ok {
				return *s
			}
		}
	}
	return ""
}
