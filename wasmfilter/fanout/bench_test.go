package fanout_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/fanouttest"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// BenchmarkFanoutAddedLatency measures, in one run and interleaved, what a
// fan-out over the three fraud members costs over calling the same three
// members directly and concurrently (whose time is the slowest member's):
// the filter's added latency, and the ratio of the two.
func BenchmarkFanoutAddedLatency(b *testing.B) {
	f := startFraud(b)
	in := features(1)
	for _, grpc := range []bool{false, true} {
		b.Run(map[bool]string{false: "rest", true: "grpc"}[grpc], func(b *testing.B) {
			ctx := context.Background()
			r := filterconfig.FanoutRoute{Route: "fraud", Members: f.routeMembers(grpc, fraudMembers...), TimeoutMs: 10000}
			cluster := "fraud.v1"
			req := restRequest(b, "fraud", in)
			if grpc {
				r.Primary, cluster, req = grpcCluster("fraud.v1"), grpcCluster("fraud.v1"), grpcRequest(b, "fraud", in)
			}
			vm := fanouttest.NewVM(b, f.clusters, r)
			direct := directCaller(b, f, grpc, in)
			// Warm connections and the models.
			for range 3 {
				if _, err := vm.RoundTrip(ctx, cluster, req); err != nil {
					b.Fatal(err)
				}
				if err := direct(ctx); err != nil {
					b.Fatal(err)
				}
			}
			var directTime, fanoutTime, directCPU, fanoutCPU time.Duration
			for b.Loop() {
				c0, t0 := cpuTime(), time.Now()
				if err := direct(ctx); err != nil {
					b.Fatal(err)
				}
				c1, t1 := cpuTime(), time.Now()
				resp, err := vm.RoundTrip(ctx, cluster, req)
				if err != nil {
					b.Fatal(err)
				}
				if resp.Status != 200 {
					b.Fatalf("status %d", resp.Status)
				}
				fanoutTime += time.Since(t1)
				directTime += t1.Sub(t0)
				fanoutCPU += cpuTime() - c1
				directCPU += c1 - c0
			}
			n := float64(b.N)
			// Both sides include the in-process inference servers' own CPU,
			// so the difference is the filter's and the host's.
			b.ReportMetric(float64(directCPU.Microseconds())/n, "direct-cpu-µs/op")
			b.ReportMetric(float64(fanoutCPU.Microseconds())/n, "fanout-cpu-µs/op")
			b.ReportMetric(float64((fanoutCPU-directCPU).Microseconds())/n, "added-cpu-µs/op")
			b.ReportMetric(float64(directTime.Microseconds())/n, "slowest-member-µs/op")
			b.ReportMetric(float64(fanoutTime.Microseconds())/n, "fanout-µs/op")
			b.ReportMetric(float64((fanoutTime-directTime).Microseconds())/n, "added-µs/op")
			b.ReportMetric(float64(fanoutTime)/float64(directTime), "fanout/slowest")
		})
	}
}

// directCaller calls the three members concurrently, as a client doing the
// fan-out itself would, and returns when the slowest has answered.
func directCaller(b *testing.B, f *fixture, grpc bool, in oip.Tensor) func(context.Context) error {
	b.Helper()
	client := &http.Client{}
	b.Cleanup(client.CloseIdleConnections)
	clients := map[string]pb.GRPCInferenceServiceClient{}
	reqs := map[string]*pb.ModelInferRequest{}
	for _, n := range fraudMembers {
		m := f.members[n]
		clients[n] = m.srv.Client(b)
		reqs[n] = toPB(b, &oip.Request{ModelName: m.model, ModelVersion: m.version, Inputs: []oip.Tensor{in}})
	}
	return func(ctx context.Context) error {
		g, ctx := errgroup.WithContext(ctx)
		for _, n := range fraudMembers {
			m := f.members[n]
			if grpc {
				c, req := clients[n], reqs[n]
				g.Go(func() error {
					_, err := c.ModelInfer(ctx, req)
					return err
				})
				continue
			}
			body, err := oip.EncodeJSONRequest("", []oip.Tensor{in})
			if err != nil {
				return err
			}
			url := "http://" + m.srv.HTTPAddr + oip.InferPathFor(m.model, m.version)
			g.Go(func() error {
				hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				if err != nil {
					return err
				}
				resp, err := client.Do(hr)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				_, err = io.Copy(io.Discard, resp.Body)
				return err
			})
		}
		return g.Wait()
	}
}

// BenchmarkFanoutVM measures starting one VM of the real fanout.wasm (one
// Envoy worker's copy) and reports the module size and the VM's memory.
func BenchmarkFanoutVM(b *testing.B) {
	mod := wasmtest.Load(b, fanouttest.Pkg)
	cfg := []byte(`{"routes":[{"route":"fraud","members":[{"cluster":"a","model":"fraud"},{"cluster":"b","model":"fraud"}]}]}`)
	var mem uint32
	for b.Loop() {
		vm, err := mod.NewVM(context.Background(), wasmtest.Config{PluginConfig: cfg, AllowOnHeadersStopIteration: true})
		if err != nil {
			b.Fatal(err)
		}
		mem = vm.MemoryBytes()
		vm.Close()
	}
	b.ReportMetric(float64(mod.Size()), "wasm-bytes")
	b.ReportMetric(float64(mem), "vm-memory-bytes")
}
