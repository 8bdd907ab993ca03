package tracing

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/runtime/builtin"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/fanouttest"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// ensembleMember is one traced inference server of the fraud ensemble.
type ensembleMember struct {
	name, model, version string
	srv                  *inferencetest.Server
	rec                  recorded
}

// startEnsemble starts one traced server per member of the demo fraud
// ensemble, each recording its own spans.
func startEnsemble(t *testing.T) []*ensembleMember {
	t.Helper()
	members := []*ensembleMember{
		{name: "fraud.v1", model: "fraud", version: "1"},
		{name: "fraud.v2", model: "fraud", version: "2"},
		{name: "fraud-logistic.v1", model: "fraud-logistic"},
	}
	for _, m := range members {
		m.rec = newRecorded(t)
		m.srv = inferencetest.Start(t, inferencetest.Options{Name: m.name, Registry: builtin.Registry(), Tracing: m.rec.tracing})
	}
	return members
}

func grpcClusterOf(name string) string { return name + ".grpc" }

// TestFanoutCalloutsJoinTheCallersTrace: through the real fanout.wasm, a
// request carrying a traceparent reaches every ensemble member in the same
// trace, as a child of the caller's span, with the member's model
// evaluation under it, over REST (answered by the filter) and gRPC (one
// member forwarded to, the others called out).
func TestFanoutCalloutsJoinTheCallersTrace(t *testing.T) {
	if testing.Short() {
		t.Skip("runs fanout.wasm against three servers")
	}
	const (
		traceHex  = "0af7651916cd43dd8448eb211c80319c"
		parentHex = "b7ad6b7169203331"
	)
	traceID, _ := trace.TraceIDFromHex(traceHex)
	parentID, _ := trace.SpanIDFromHex(parentHex)
	traceparent := "00-" + traceHex + "-" + parentHex + "-01"
	in := oip.Tensor{Name: "features", Datatype: "FP32", Shape: []int64{2, 30}, Values: make([]float64, 60)}

	for _, proto := range []string{"rest", "grpc"} {
		t.Run(proto, func(t *testing.T) {
			members := startEnsemble(t)
			route := filterconfig.FanoutRoute{Route: "fraud", TimeoutMs: 10000}
			clusters := map[string]wasmtest.Cluster{}
			for _, m := range members {
				cluster := m.name
				clusters[m.name] = wasmtest.Cluster{Address: m.srv.HTTPAddr}
				clusters[grpcClusterOf(m.name)] = wasmtest.Cluster{Address: m.srv.GRPCAddr, HTTP2: true}
				if proto == "grpc" {
					cluster = grpcClusterOf(m.name)
				}
				route.Members = append(route.Members, filterconfig.FanoutMember{Name: m.name, Cluster: cluster, Model: m.model, Version: m.version})
			}
			var req wasmtest.Request
			upstream := "fraud.v1"
			if proto == "grpc" {
				route.Primary = grpcClusterOf("fraud.v2")
				upstream = route.Primary
				msg, err := oip.EncodeGRPCRequest(&oip.Request{ModelName: "fraud", ID: "req-1", Inputs: []oip.Tensor{in}})
				if err != nil {
					t.Fatal(err)
				}
				req = wasmtest.Request{Method: "POST", Path: "/inference.GRPCInferenceService/ModelInfer", Body: oip.Frame(msg),
					Headers: [][2]string{{"content-type", "application/grpc"}, {"te", "trailers"}, {"traceparent", traceparent}}}
			} else {
				body, err := oip.EncodeJSONRequest("req-1", []oip.Tensor{in})
				if err != nil {
					t.Fatal(err)
				}
				req = wasmtest.Request{Method: "POST", Path: oip.InferPathFor("fraud", ""), Body: body,
					Headers: [][2]string{{"content-type", "application/json"}, {"traceparent", traceparent}}}
			}
			vm := fanouttest.NewVM(t, clusters, route)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			resp, err := vm.RoundTrip(ctx, upstream, req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != 200 || (proto == "grpc" && resp.Trailer("grpc-status") != "0") {
				t.Fatalf("ensemble answered %d grpc-status %q: %s", resp.Status, resp.Trailer("grpc-status"), resp.Body)
			}

			for _, m := range members {
				m.srv.Stop() // drains the server, so its spans have ended
				all := spans(m.rec.rec.Ended())
				tr := all.inTrace(traceID)
				var servers spans
				for _, s := range tr {
					if s.SpanKind() == trace.SpanKindServer {
						servers = append(servers, s)
					}
				}
				if len(servers) == 0 {
					t.Errorf("member %s traced no request in the caller's trace %s; its spans:\n%s", m.name, traceHex, all)
					continue
				}
				for _, s := range servers {
					if s.Parent().SpanID() != parentID || !s.Parent().IsRemote() {
						t.Errorf("member %s: %q has parent %s, want the caller's remote span %s", m.name, s.Name(), s.Parent().SpanID(), parentHex)
					}
				}
				documented(t, all)
				predict := tr.one(t, "inference.predict", trace.SpanKindUnspecified)
				if p := tr.byID(predict.Parent().SpanID()); p == nil || p.SpanKind() != trace.SpanKindServer {
					t.Errorf("member %s: inference.predict's parent is %v, want the request's server span", m.name, p)
				}
				if got := attr(predict, "inference.model"); got != m.model {
					t.Errorf("member %s evaluated model %q, want %q", m.name, got, m.model)
				}
			}
		})
	}
}
