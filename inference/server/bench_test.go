package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/runtime/builtin"
	"github.com/maestro-ml/maestro/inference/tensor"
)

// fraudRequest is a fraud request of rows rows (30 features each), in
// typed or raw form.
func fraudRequest(rows int, raw bool) *pb.ModelInferRequest {
	x := make([]float32, rows*30)
	for i := range x {
		x[i] = float32(i%17) / 7
	}
	in := &pb.ModelInferRequest_InferInputTensor{Name: "features", Datatype: "FP32", Shape: []int64{int64(rows), 30}}
	req := &pb.ModelInferRequest{ModelName: "fraud", Inputs: []*pb.ModelInferRequest_InferInputTensor{in}}
	if raw {
		_, b, _ := tensor.EncodeRaw(runtime.Tensor{Name: "features", Datatype: runtime.FP32, Shape: []int64{int64(rows), 30}, Data: x})
		req.RawInputContents = [][]byte{b}
	} else {
		in.Contents = &pb.InferTensorContents{Fp32Contents: x}
	}
	return req
}

// cost is what a run took: wall-clock time and the process's CPU time
// (client and server both run in it). CPU per request is the steadier
// figure on a machine shared with other work, and bounds throughput: at
// saturation, requests/s = cores / CPU per request.
// In the comparison with a server in its own process, cpu is the server's
// and client the benchmark process's.
type cost struct{ wall, cpu, client time.Duration }

func (c *cost) add(o cost) { c.wall += o.wall; c.cpu += o.cpu; c.client += o.client }

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// run calls f n times from c goroutines.
func run(b *testing.B, n, c int, f func(ctx context.Context) error) cost {
	b.Helper()
	var next atomic.Int64
	g, ctx := errgroup.WithContext(context.Background())
	cpu0, start := cpuTime(b), time.Now()
	for range c {
		g.Go(func() error {
			for next.Add(1) <= int64(n) {
				if err := f(ctx); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return cost{wall: time.Since(start), cpu: cpuTime(b) - cpu0}
}

// BenchmarkGRPCFraudVsEmpty measures, in one run and on one server, the
// throughput of an empty unary call (ServerLive) and of a 1-row fraud
// ModelInfer at several concurrencies, and reports their ratio.
func BenchmarkGRPCFraudVsEmpty(b *testing.B) {
	srv := inferencetest.Start(b, inferencetest.Options{})
	c := srv.Client(b)
	req := fraudRequest(1, false)
	if _, err := c.ModelInfer(context.Background(), req); err != nil { // load the model
		b.Fatal(err)
	}
	for _, conc := range []int{1, 64} {
		b.Run("c"+strconv.Itoa(conc), func(b *testing.B) {
			b.ReportAllocs()
			// Interleave the two in rounds, so that load from elsewhere on
			// the machine falls on both alike.
			const rounds = 10
			per := max(b.N/rounds, 1)
			var empty, infer cost
			for range rounds {
				empty.add(run(b, per, conc, func(ctx context.Context) error {
					_, err := c.ServerLive(ctx, &pb.ServerLiveRequest{})
					return err
				}))
				infer.add(run(b, per, conc, func(ctx context.Context) error {
					_, err := c.ModelInfer(ctx, req)
					return err
				}))
			}
			b.StopTimer()
			n := float64(per * rounds)
			emptyRate, inferRate := n/empty.wall.Seconds(), n/infer.wall.Seconds()
			b.ReportMetric(emptyRate, "empty-req/s")
			b.ReportMetric(inferRate, "infer-req/s")
			b.ReportMetric(inferRate/emptyRate, "infer/empty")
			b.ReportMetric(float64(empty.cpu.Nanoseconds())/n/1000, "empty-cpu-µs")
			b.ReportMetric(float64(infer.cpu.Nanoseconds())/n/1000, "infer-cpu-µs")
			b.ReportMetric(float64(empty.cpu)/float64(infer.cpu), "cpu-empty/infer")
		})
	}
}

// BenchmarkGRPCLatencyAt2000 sends 1-row fraud requests open-loop at 2,000
// req/s (each on its own schedule, not waiting for the previous one) and
// reports latency percentiles. Every tenth tick also sends an empty call
// (ServerLive) in the same window: a tail the machine causes shows in both.
func BenchmarkGRPCLatencyAt2000(b *testing.B) {
	const rate, probeEvery = 2000, 10
	srv := inferencetest.Start(b, inferencetest.Options{})
	c := srv.Client(b)
	req := fraudRequest(1, false)
	if _, err := c.ModelInfer(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	n := max(b.N, 2*rate) // at least 2s of traffic, for a meaningful p99
	lat := make([]time.Duration, n)
	probes := make([]time.Duration, (n+probeEvery-1)/probeEvery)
	interval := time.Second / rate
	var wg sync.WaitGroup
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for i := range n {
		// Pacing, not synchronisation: the schedule is the load pattern.
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		wg.Go(func() {
			t0 := time.Now()
			if _, err := c.ModelInfer(context.Background(), req); err != nil {
				failed.Add(1)
			}
			lat[i] = time.Since(t0)
		})
		if i%probeEvery == 0 {
			wg.Go(func() {
				t0 := time.Now()
				if _, err := c.ServerLive(context.Background(), &pb.ServerLiveRequest{}); err != nil {
					failed.Add(1)
				}
				probes[i/probeEvery] = time.Since(t0)
			})
		}
	}
	wg.Wait()
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d requests failed", f)
	}
	pct := func(d []time.Duration, p float64) float64 {
		slices.Sort(d)
		return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "req/s")
	b.ReportMetric(pct(lat, 0.50), "p50-ms")
	b.ReportMetric(pct(lat, 0.99), "p99-ms")
	b.ReportMetric(pct(lat, 0.999), "p999-ms")
	b.ReportMetric(pct(probes, 0.99), "empty-p99-ms")
}

// BenchmarkFraudBatch1024 evaluates a 1,024-row fraud batch through gRPC
// (raw contents, as Triton clients send) and directly on the model.
func BenchmarkFraudBatch1024(b *testing.B) {
	srv := inferencetest.Start(b, inferencetest.Options{})
	c := srv.Client(b)
	req := fraudRequest(1024, true)
	b.Run("grpc-raw", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime(b)
		for b.Loop() {
			if _, err := c.ModelInfer(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N)/1024, "cpu-ns/row")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1024, "ns/row")
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/batch")
	})
	b.Run("model", func(b *testing.B) {
		l, err := srv.Server.Repository().Get(context.Background(), "fraud", "")
		if err != nil {
			b.Fatal(err)
		}
		in := fraudRequest(1024, false).GetInputs()[0]
		t, err := tensor.DecodeContents(in)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		cpu0 := cpuTime(b)
		for b.Loop() {
			if _, err := l.Predict(context.Background(), []runtime.Tensor{t}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N)/1024, "cpu-ns/row")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1024, "ns/row")
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/batch")
	})
}

// BenchmarkHundredModels loads 100 copies of the fraud model (XGBoost v1)
// and reports the live heap they add and the process's resident memory,
// then repeats under a budget of 25 models' worth and checks the cache keeps
// to it.
func BenchmarkHundredModels(b *testing.B) {
	root := inferencetest.ModuleRoot(b)
	dir := b.TempDir()
	cfg, err := os.ReadFile(filepath.Join(root, "examples", "models", "fraud", "config.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	for i := range 100 {
		name := fmt.Sprintf("fraud%03d", i)
		if err := os.MkdirAll(filepath.Join(dir, name, "1"), 0o755); err != nil {
			b.Fatal(err)
		}
		c := strings.Replace(string(cfg), "name: fraud", "name: "+name, 1)
		if err := os.WriteFile(filepath.Join(dir, name, "config.yaml"), []byte(c), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(root, "examples", "models", "fraud", "1", "model.json"), filepath.Join(dir, name, "1", "model.json")); err != nil {
			b.Fatal(err)
		}
	}
	for _, budgetModels := range []int64{0, 25} {
		b.Run(fmt.Sprintf("budget=%d-models", budgetModels), func(b *testing.B) {
			for b.Loop() {
				var budget int64
				if budgetModels > 0 {
					probe, err := repository.New(repository.Options{Dir: dir, Registry: builtin.Registry()})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := probe.Get(context.Background(), "fraud000", ""); err != nil {
						b.Fatal(err)
					}
					budget = probe.Stats().Bytes * budgetModels
					probe.Close()
				}
				heap0 := heapInUse()
				r, err := repository.New(repository.Options{Dir: dir, Registry: builtin.Registry(), MemoryBudget: budget})
				if err != nil {
					b.Fatal(err)
				}
				for i := range 100 {
					if _, err := r.Get(context.Background(), fmt.Sprintf("fraud%03d", i), ""); err != nil {
						b.Fatal(err)
					}
				}
				st := r.Stats()
				if budget > 0 && st.Bytes > budget {
					b.Fatalf("cache holds %d bytes over its budget of %d", st.Bytes, budget)
				}
				b.ReportMetric(float64(heapInUse()-heap0)/(1<<20), "heap-growth-MiB")
				b.ReportMetric(float64(rssBytes(b))/(1<<20), "rss-MiB")
				b.ReportMetric(float64(st.LoadedVersions), "loaded")
				b.ReportMetric(float64(st.Bytes)/(1<<20), "cache-MiB")
				r.Close()
			}
		})
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// rssBytes reads the process's resident set from /proc/self/statm.
func rssBytes(b *testing.B) int64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Fatalf("RSS needs /proc/self/statm: %v", err)
	}
	f := strings.Fields(string(data))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// BenchmarkHTTPFraud measures 1-row fraud inferences over REST/JSON against
// the empty GET /v2/health/live on the same server, interleaved in rounds.
func BenchmarkHTTPFraud(b *testing.B) {
	srv := inferencetest.Start(b, inferencetest.Options{})
	base := "http://" + srv.HTTPAddr
	row := strings.TrimSuffix(strings.Repeat("0.5,", 30), ",")
	body := []byte(`{"inputs":[{"name":"features","shape":[1,30],"datatype":"FP32","data":[` + row + `]}]}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	do := func(ctx context.Context, method, url string, body []byte) error {
		req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			return err
		}
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("%s %s: %d", method, url, res.StatusCode)
		}
		return nil
	}
	for _, conc := range []int{1, 64} {
		b.Run("c"+strconv.Itoa(conc), func(b *testing.B) {
			const rounds = 10
			per := max(b.N/rounds, 1)
			var empty, infer cost
			for range rounds {
				empty.add(run(b, per, conc, func(ctx context.Context) error { return do(ctx, http.MethodGet, base+"/v2/health/live", nil) }))
				infer.add(run(b, per, conc, func(ctx context.Context) error { return do(ctx, http.MethodPost, base+"/v2/models/fraud/infer", body) }))
			}
			n := float64(per * rounds)
			b.ReportMetric(n/infer.wall.Seconds(), "infer-req/s")
			b.ReportMetric(n/empty.wall.Seconds(), "empty-req/s")
			b.ReportMetric(float64(infer.cpu.Nanoseconds())/n/1000, "infer-cpu-µs")
			b.ReportMetric(float64(empty.cpu)/float64(infer.cpu), "cpu-empty/infer")
		})
	}
}
