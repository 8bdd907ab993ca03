package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/internal/e2etest"
)

// benchCallers is the number of concurrent callers the figure is
// taken at.
const benchCallers = 64

// run makes n unary ModelInfer calls with callers concurrent callers on
// one client and appends the latencies to lat; it returns the elapsed time.
func run(b *testing.B, c pb.GRPCInferenceServiceClient, callers, n int, lat *[]time.Duration) time.Duration {
	b.Helper()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-maestro-model", "fraud")
	req := e2etest.InferRequest("fraud")
	per := make([][]time.Duration, callers)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := range callers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				if _, err := c.ModelInfer(ctx, req); err != nil {
					failed.Store(err)
					return
				}
				per[w] = append(per[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := failed.Load().(error); ok {
		b.Fatalf("ModelInfer: %v", err)
	}
	*lat = slices.Concat(append([][]time.Duration{*lat}, per...)...)
	return elapsed
}

// side accumulates one path's figures over the alternated rounds.
type side struct {
	lat     []time.Duration
	elapsed time.Duration
	cpu     time.Duration // process CPU (user+system): client, gateway and server
	mallocs uint64
	// write and read system calls of the process (client, gateway and
	// server): how well each side batches frames into one call.
	writes, reads uint64
}

// syscalls is the process's write and read system call counts so far,
// from /proc/self/io (zero where there is none).
func syscalls() (writes, reads uint64) {
	b, _ := os.ReadFile("/proc/self/io")
	for l := range strings.SplitSeq(string(b), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		n, _ := strconv.ParseUint(v, 10, 64)
		switch k {
		case "syscw":
			writes = n
		case "syscr":
			reads = n
		}
	}
	return writes, reads
}

func (s *side) round(b *testing.B, c pb.GRPCInferenceServiceClient, callers, n int) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m0, cpu0 := ms.Mallocs, processCPU(b)
	w0, r0 := syscalls()
	s.elapsed += run(b, c, callers, n, &s.lat)
	w1, r1 := syscalls()
	s.writes, s.reads = s.writes+w1-w0, s.reads+r1-r0
	s.cpu += processCPU(b) - cpu0
	runtime.ReadMemStats(&ms)
	s.mallocs += ms.Mallocs - m0
}

func (s *side) p(q int) float64 {
	slices.Sort(s.lat)
	return float64(s.lat[(len(s.lat)-1)*q/100].Microseconds())
}

func (s *side) rps() float64 { return float64(len(s.lat)) / s.elapsed.Seconds() }

func (s *side) cpuPerReq() float64 { return float64(s.cpu.Microseconds()) / float64(len(s.lat)) }

// processCPU is the process's user+system CPU time so far. On a shared
// machine wall-clock figures move with the load; CPU per request does not.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchRounds is how many rounds each path gets, alternated, so that a
// change of machine load touches both paths alike.
const benchRounds = 4

// BenchmarkUnaryGRPCGatewayVsDirect measures unary OIP gRPC through the
// gateway (with the slo filter from ECDS) against the same inference
// server called directly, same client code, in one run with the two paths
// alternated round by round. callers=64 is the figure. Besides the
// wall-clock ratios it reports process CPU and allocations per request for
// each path (client and server included in both; the difference is the
// gateway's cost), which hold still on a loaded machine.
func BenchmarkUnaryGRPCGatewayVsDirect(b *testing.B) {
	for _, callers := range []int{benchCallers, 1} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) { benchGatewayVsDirect(b, callers) })
	}
}

func benchGatewayVsDirect(b *testing.B, callers int) {
	dir := e2etest.WasmDir(b)
	repo := b.TempDir()
	inferencetest.WriteModel(b, repo, inferencetest.TestModel{Name: "fraud"})
	srv := inferencetest.Start(b, inferencetest.Options{Name: "fraud-v1", ModelDir: repo})
	path := filepath.Join(b.TempDir(), "mesh.yaml")
	e2etest.ReplaceFile(b, path, e2etest.SLOPolicy(dir, srv.GRPCAddr))
	cp := startPlane(b, path, "127.0.0.1:0")
	addr := startGateway(b, "gw-bench", cp.xds, nil).waitLive(b)

	dial := func(addr string) pb.GRPCInferenceServiceClient {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		return pb.NewGRPCInferenceServiceClient(conn)
	}
	direct, through := dial(srv.GRPCAddr), dial(addr)
	// Warm both paths (connections, VMs) outside the measurement.
	var warm []time.Duration
	run(b, direct, callers, 2*benchCallers, &warm)
	run(b, through, callers, 2*benchCallers, &warm)

	b.ResetTimer()
	per := max(b.N/benchRounds, callers)
	var d, g side
	for range benchRounds {
		d.round(b, direct, callers, per)
		g.round(b, through, callers, per)
	}
	b.StopTimer()
	b.ReportMetric(d.p(50), "direct-p50-µs")
	b.ReportMetric(g.p(50), "gateway-p50-µs")
	b.ReportMetric(g.p(50)/d.p(50), "p50-ratio")
	b.ReportMetric(d.p(99), "direct-p99-µs")
	b.ReportMetric(g.p(99), "gateway-p99-µs")
	b.ReportMetric(d.rps(), "direct-req/s")
	b.ReportMetric(g.rps(), "gateway-req/s")
	b.ReportMetric(g.rps()/d.rps(), "throughput-ratio")
	b.ReportMetric(d.cpuPerReq(), "direct-cpu-µs/req")
	b.ReportMetric(g.cpuPerReq(), "gateway-cpu-µs/req")
	b.ReportMetric(float64(d.mallocs)/float64(len(d.lat)), "direct-allocs/req")
	b.ReportMetric(float64(g.mallocs)/float64(len(g.lat)), "gateway-allocs/req")
	b.ReportMetric(float64(d.writes)/float64(len(d.lat)), "direct-writes/req")
	b.ReportMetric(float64(g.writes)/float64(len(g.lat)), "gateway-writes/req")
	b.ReportMetric(float64(d.reads)/float64(len(d.lat)), "direct-reads/req")
	b.ReportMetric(float64(g.reads)/float64(len(g.lat)), "gateway-reads/req")
}

// ensemblePolicy is filterPolicy's mesh: fraud-ensemble fans out to v1 and
// v2 (quorum 2, weighted mean) through the gateway.
func ensemblePolicy(dir, v1, v2 string) string { return e2etest.FilterPolicy(dir, v1, v2, v1) }

// runModel makes n calls for model with one caller and appends the
// latencies to lat.
func runModel(b *testing.B, c pb.GRPCInferenceServiceClient, model string, n int, lat *[]time.Duration) {
	b.Helper()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-maestro-model", model)
	req := e2etest.InferRequest(model)
	for range n {
		t0 := time.Now()
		if _, err := c.ModelInfer(ctx, req); err != nil {
			b.Fatalf("ModelInfer %s: %v", model, err)
		}
		*lat = append(*lat, time.Since(t0))
	}
}

func pct(lat []time.Duration, q int) float64 {
	s := slices.Sorted(slices.Values(lat))
	return float64(s[(len(s)-1)*q/100].Microseconds())
}

// BenchmarkEnsembleAddedLatency measures what an ensemble costs over its
// slowest member: fraud-ensemble through the gateway (both members called,
// quorum 2) against each member called directly, one caller, rounds
// alternated. ensemble-added-p99-µs is the ensemble's p99 less the larger
// member p99 (the target is at most 1 ms); the p50 figure and CPU
// per call are steadier on a loaded machine.
func BenchmarkEnsembleAddedLatency(b *testing.B) {
	dir := e2etest.WasmDir(b)
	repo := e2etest.ModelRepo(b)
	v1 := inferencetest.Start(b, inferencetest.Options{Name: "fraud-v1", ModelDir: repo})
	v2 := inferencetest.Start(b, inferencetest.Options{Name: "fraud-v2", ModelDir: repo})
	path := filepath.Join(b.TempDir(), "mesh.yaml")
	e2etest.ReplaceFile(b, path, ensemblePolicy(dir, v1.GRPCAddr, v2.GRPCAddr))
	cp := startPlane(b, path, "127.0.0.1:0")
	addr := startGateway(b, "gw-ens", cp.xds, nil).waitLive(b)
	dial := func(addr string) pb.GRPCInferenceServiceClient {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		return pb.NewGRPCInferenceServiceClient(conn)
	}
	m1, m2, gw := dial(v1.GRPCAddr), dial(v2.GRPCAddr), dial(addr)
	var warm []time.Duration
	runModel(b, m1, "fraud", 50, &warm)
	runModel(b, m2, "fraud", 50, &warm)
	runModel(b, gw, "fraud-ensemble", 50, &warm)

	b.ResetTimer()
	per := max(b.N/benchRounds, 10)
	var l1, l2, le []time.Duration
	var memberCPU, ensembleCPU time.Duration
	for range benchRounds {
		c0 := processCPU(b)
		runModel(b, m1, "fraud", per, &l1)
		runModel(b, m2, "fraud", per, &l2)
		c1 := processCPU(b)
		runModel(b, gw, "fraud-ensemble", per, &le)
		memberCPU, ensembleCPU = memberCPU+c1-c0, ensembleCPU+processCPU(b)-c1
	}
	b.StopTimer()
	b.ReportMetric(pct(l1, 99), "member1-p99-µs")
	b.ReportMetric(pct(l2, 99), "member2-p99-µs")
	b.ReportMetric(pct(le, 50), "ensemble-p50-µs")
	b.ReportMetric(pct(le, 99), "ensemble-p99-µs")
	b.ReportMetric(pct(le, 50)-max(pct(l1, 50), pct(l2, 50)), "ensemble-added-p50-µs")
	b.ReportMetric(pct(le, 99)-max(pct(l1, 99), pct(l2, 99)), "ensemble-added-p99-µs")
	// CPU of one ensemble call (gateway, both members, client) against
	// that of calling both members directly.
	b.ReportMetric(float64(ensembleCPU.Microseconds())/float64(len(le)), "ensemble-cpu-µs/req")
	b.ReportMetric(float64(memberCPU.Microseconds())/float64(len(le)), "members-direct-cpu-µs/req")
}
