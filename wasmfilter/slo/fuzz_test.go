package slo_test

import (
	"context"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// FuzzSLOFilter feeds arbitrary requests and responses to the real module:
// no input may trap the VM, and every stream is metered exactly once.
func FuzzSLOFilter(f *testing.F) {
	f.Add("/v2/models/fraud/infer", []byte(`{"inputs":[]}`), "200", "", false)
	f.Add("/inference.GRPCInferenceService/ModelInfer", []byte{0, 0, 0, 0, 7, 0x0a, 5, 'f', 'r', 'a', 'u', 'd'}, "200", "0", true)
	f.Add("/inference.GRPCInferenceService/ModelInfer", []byte{0, 0xff, 0xff, 0xff, 0xff, 0x0a, 0xff}, "200", "14", true)
	f.Add("/v2/models/../infer?x#y", []byte(nil), "5000", "-1", false)
	f.Add("", []byte{}, "", "x", true)
	vm, err := wasmtest.Load(f, sloPkg).NewVM(context.Background(), wasmtest.Config{
		PluginConfig: []byte(`{"objectives":[{"availability":0.99,"latency":[{"percentile":99,"thresholdMs":1}],"budgetHeader":"x-b"}]}`),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { vm.Close() })
	streams := uint64(0)
	f.Fuzz(func(t *testing.T, path string, body []byte, status, grpcStatus string, trailers bool) {
		s, err := vm.NewStream()
		if err != nil {
			t.Fatal(err)
		}
		step := func(_ any, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("path %q: %v", path, err)
			}
		}
		step(s.RequestHeaders([][2]string{{":path", path}, {":method", "POST"}, {"content-type", "application/grpc"}}, len(body) == 0))
		if len(body) > 0 {
			step(s.RequestBody(body, true))
		}
		step(s.ResponseHeaders([][2]string{{":status", status}, {"grpc-status", grpcStatus}}, !trailers))
		if trailers {
			step(s.ResponseTrailers([][2]string{{"grpc-status", grpcStatus}}))
		}
		if err := s.Done(); err != nil {
			t.Fatal(err)
		}
		streams++
		var metered uint64
		for _, name := range vm.Stats().Names() {
			if strings.HasPrefix(name, "maestro_slo_requests_total.") {
				metered += vm.Stats().Value(name)
			}
		}
		if metered != streams {
			t.Fatalf("metered %d requests after %d streams", metered, streams)
		}
	})
}
