package fanout_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/wasmfilter/fanout/fanouttest"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// FuzzFilterRequest feeds arbitrary request bodies, as REST and as gRPC,
// to the real fanout.wasm in front of real servers. A trap would close the
// VM and fail every later call, so each input must leave it answering:
// with the ensemble's answer, a 400 / INVALID_ARGUMENT, or a member error.
func FuzzFilterRequest(f *testing.F) {
	in := features(2)
	restBody, _ := oip.EncodeJSONRequest("id", []oip.Tensor{in})
	grpcMsg, _ := oip.EncodeGRPCRequest(&oip.Request{ModelName: "fraud", Inputs: []oip.Tensor{in}})
	f.Add(restBody, false)
	f.Add(oip.Frame(grpcMsg), true)
	f.Add([]byte(`{"inputs":[{"name":"features","shape":[1,30],"datatype":"BYTES","data":["a"]}]}`), false)
	f.Add([]byte(`{"inputs":[{"name":"features","shape":[1],"datatype":"FP32","data":[[[[1]]]]}]}`), false)
	f.Add(oip.Frame([]byte{0x2a, 0x03, 0x0a, 0x01}), true)
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff}, true)

	fx := startFraud(f)
	rest := filterconfig.FanoutRoute{Route: "rest", Members: fx.routeMembers(false, fraudMembers...), TimeoutMs: 5000}
	grpc := filterconfig.FanoutRoute{Route: "grpc", Members: fx.routeMembers(true, fraudMembers...), TimeoutMs: 5000,
		Primary: grpcCluster("fraud.v1")}
	restVM, grpcVM := fanouttest.NewVM(f, fx.clusters, rest), fanouttest.NewVM(f, fx.clusters, grpc)

	f.Fuzz(func(t *testing.T, body []byte, isGRPC bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		vm, cluster := restVM, "fraud.v1"
		req := wasmtest.Request{Method: "POST", Path: "/v2/models/fraud/infer", Body: body,
			Headers: [][2]string{{"content-type", "application/json"}}}
		if isGRPC {
			vm, cluster = grpcVM, grpcCluster("fraud.v1")
			req.Path, req.Headers = "/inference.GRPCInferenceService/ModelInfer", [][2]string{{"content-type", "application/grpc"}}
		}
		resp, err := vm.RoundTrip(ctx, cluster, req)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if isGRPC {
			st := resp.Header("grpc-status")
			if st == "" {
				st = resp.Trailer("grpc-status")
			}
			if st == "" {
				t.Fatalf("grpc answer without grpc-status: %+v", resp)
			}
			return
		}
		switch resp.Status {
		case 200, 400, 502, 503:
		default:
			t.Fatalf("status %d: %s", resp.Status, resp.Body)
		}
		if resp.Status == 400 && !strings.Contains(string(resp.Body), "fanout: ") {
			t.Fatalf("400 without the filter's explanation: %s", resp.Body)
		}
	})
}
