package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime/builtin"
	"github.com/maestro-ml/maestro/inference/server"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// serveEnv makes the test binary serve instead of testing: the comparison
// benchmark runs the server in a child process of its own, so that the
// server's CPU time is measured apart from the client's.
const serveEnv = "MAESTRO_BENCH_SERVE"

// Settings of the child server: its GOMAXPROCS, and files for its CPU and
// allocation profiles.
const (
	serverProcsEnv = "MAESTRO_BENCH_SERVER_GOMAXPROCS"
	serverCPUEnv   = "MAESTRO_BENCH_SERVER_CPUPROFILE"
	serverMemEnv   = "MAESTRO_BENCH_SERVER_MEMPROFILE"
)

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) != "" {
		if err := serveForBenchmark(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveForBenchmark serves the demo models on a loopback port, writes the
// address on stdout, and stops when stdin closes (the benchmark ended or
// died).
func serveForBenchmark() error {
	if f := os.Getenv(serverCPUEnv); f != "" {
		out, err := os.Create(f)
		if err != nil {
			return err
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if f := os.Getenv(serverMemEnv); f != "" {
		goruntime.MemProfileRate = 4096
		defer func() {
			if out, err := os.Create(f); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(out, 0)
				out.Close()
			}
		}()
	}
	dir, err := benchModels()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := server.Config{Models: repository.Options{Dir: dir, Registry: builtin.Registry()}}
	if telemetry.Enabled() {
		// The server's own tracing set-up, from the OTEL_* variables the
		// benchmark passed (BenchmarkTracingUnsampled).
		tr, err := telemetry.NewTracing(context.Background(), "maestro-bench")
		if err != nil {
			return err
		}
		defer func() { _ = tr.Shutdown(context.Background()) }()
		cfg.Tracing = tr
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		cancel()
	}()
	fmt.Println(lis.Addr().String())
	return srv.Serve(ctx, lis, nil)
}

// benchModels makes a model repository of the demo fraud model, as it is
// (with dynamic batching) and as "fraud_unbatched" without batching, so
// that one server compares the two.
func benchModels() (string, error) {
	src, err := filepath.Abs(filepath.Join("..", "..", "examples", "models", "fraud"))
	if err != nil {
		return "", err
	}
	cfg, err := os.ReadFile(filepath.Join(src, "config.yaml"))
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "maestro-bench-models-")
	if err != nil {
		return "", err
	}
	// Directories are made, files linked: the repository scans real
	// directories only.
	link := func(model string, config []byte) error {
		for _, v := range []string{"1", "2"} {
			if err := os.MkdirAll(filepath.Join(dir, model, v), 0o755); err != nil {
				return err
			}
			files, err := os.ReadDir(filepath.Join(src, v))
			if err != nil {
				return err
			}
			for _, f := range files {
				if err := os.Symlink(filepath.Join(src, v, f.Name()), filepath.Join(dir, model, v, f.Name())); err != nil {
					return err
				}
			}
		}
		return os.WriteFile(filepath.Join(dir, model, "config.yaml"), config, 0o644)
	}
	if err := link("fraud", cfg); err != nil {
		return dir, err
	}
	var lines []string
	skip := false
	for _, l := range strings.Split(string(cfg), "\n") {
		switch {
		case strings.HasPrefix(l, "name:"):
			l = "name: fraud_unbatched"
		case strings.HasPrefix(l, "dynamic_batching:"):
			skip = true
			continue
		case skip && strings.HasPrefix(l, " "):
			continue
		}
		skip = false
		lines = append(lines, l)
	}
	return dir, link("fraud_unbatched", []byte(strings.Join(lines, "\n")))
}

// childServer is the benchmark's server process.
type childServer struct {
	cmd  *exec.Cmd
	addr string
}

// startChild starts a server process with the environment's variables
// and env's on top.
func startChild(b *testing.B, env ...string) *childServer {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), serveEnv+"=1"), env...)
	if p := os.Getenv(serverProcsEnv); p != "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+p)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("server process: %v", err)
	}
	return &childServer{cmd: cmd, addr: strings.TrimSpace(line)}
}

// cpu is the child's CPU time so far: the sum over its threads of
// /proc/<pid>/task/*/schedstat's first field (nanoseconds on a CPU), which
// is finer than the 10 ms ticks of getrusage and /proc/<pid>/stat.
func (c *childServer) cpu(b *testing.B) time.Duration {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", c.cmd.Process.Pid))
	if err != nil || len(tasks) == 0 {
		b.Fatalf("server CPU needs /proc/<pid>/task/*/schedstat: %v", err)
	}
	var total int64
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that just exited
		}
		ns, err := strconv.ParseInt(strings.Fields(string(data))[0], 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		total += ns
	}
	return time.Duration(total)
}

// BenchmarkCompareEmptyRPC compares a 1-row fraud ModelInfer with an empty
// unary call (ServerLive: same server, same options, same connection) on a
// server in its own process, in alternating rounds of one run: client
// throughput at 1 and 64 callers and the server process's CPU per request;
// then dynamic batching against none on the same server; then the p99
// latency at 2,000 req/s, from an open-loop pacer (pace), measured from each
// call's scheduled send time, on two such server processes at once, one
// answering ModelInfer and the other the empty call, in 16 rounds that
// swap the roles, with the pacer's own lateness reported as pacer-lag and
// the median and quartiles of the rounds' p99 ratios beside the pooled
// ratio. The client sends ModelInfer as bytes encoded once
// (encodedRequest). `make bench-compare` runs it.
//
// Profiles of the server process alone (the client's work is not in them):
//
//	go test -c -o server.test ./inference/server
//	MAESTRO_BENCH_SERVER_CPUPROFILE=$PWD/cpu.out MAESTRO_BENCH_SERVER_MEMPROFILE=$PWD/mem.out \
//	  ./server.test -test.run '^$' -test.bench 'CompareEmptyRPC/c64' -test.benchtime 20000x
//	go tool pprof -top -cum server.test cpu.out
//	go tool pprof -sample_index=alloc_objects -top server.test mem.out
//
// Both loads are in one profile; -focus ModelInfer or ServerLive parts them.
func BenchmarkCompareEmptyRPC(b *testing.B) {
	child := startChild(b)
	conn, err := grpc.NewClient(child.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), withClientCodec())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	c := pb.NewGRPCInferenceServiceClient(conn)
	req := encodeRequest(b, fraudRequest(1, false))
	empty := func(ctx context.Context) error {
		_, err := c.ServerLive(ctx, &pb.ServerLiveRequest{})
		return err
	}
	infer := inferEncoded(conn, req)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The child has listened before it writes its address, and loads the
	// model on the first call.
	if err := infer(ctx); err != nil {
		b.Fatalf("server: %v", err)
	}
	compareRounds(b, "c", side{child, empty}, side{child, infer}, func(b *testing.B, e, i cost, n float64) {
		er, ir := n/e.wall.Seconds(), n/i.wall.Seconds()
		b.ReportMetric(er, "empty-req/s")
		b.ReportMetric(ir, "infer-req/s")
		b.ReportMetric(ir/er, "throughput-ratio")
		b.ReportMetric(float64(e.cpu.Nanoseconds())/n/1000, "empty-srv-cpu-µs")
		b.ReportMetric(float64(i.cpu.Nanoseconds())/n/1000, "infer-srv-cpu-µs")
		b.ReportMetric(float64(i.cpu)/float64(e.cpu), "srv-cpu-ratio")
		// The client shares the cores: its CPU bounds throughput too.
		b.ReportMetric(float64(e.client.Nanoseconds())/n/1000, "empty-client-cpu-µs")
		b.ReportMetric(float64(i.client.Nanoseconds())/n/1000, "infer-client-cpu-µs")
	})
	unbatchedReq := fraudRequest(1, false)
	unbatchedReq.ModelName = "fraud_unbatched"
	unbatched := inferEncoded(conn, encodeRequest(b, unbatchedReq))
	if err := unbatched(ctx); err != nil {
		b.Fatal(err)
	}
	compareRounds(b, "batching-c", side{child, unbatched}, side{child, infer}, func(b *testing.B, off, on cost, n float64) {
		b.ReportMetric(n/on.wall.Seconds(), "batched-req/s")
		b.ReportMetric(n/off.wall.Seconds(), "unbatched-req/s")
		b.ReportMetric(off.wall.Seconds()/on.wall.Seconds(), "batched/unbatched")
		b.ReportMetric(float64(on.cpu.Nanoseconds())/n/1000, "batched-srv-cpu-µs")
		b.ReportMetric(float64(off.cpu.Nanoseconds())/n/1000, "unbatched-srv-cpu-µs")
		b.ReportMetric(float64(on.cpu)/float64(off.cpu), "srv-cpu-batched/unbatched")
	})
	// The latency comparison runs on two server processes at once, one
	// answering ModelInfer and the other the empty call, each at the full
	// rate, with their calls interleaved by one pacer; the two swap roles
	// and order every round. A stall of the machine (this one is shared)
	// then lands on both sides instead of on whichever ran at the time.
	other := startChild(b)
	conn2, err := grpc.NewClient(other.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), withClientCodec())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn2.Close() })
	c2 := pb.NewGRPCInferenceServiceClient(conn2)
	sides := [2]struct{ empty, infer func(context.Context) error }{
		{empty, infer},
		{func(ctx context.Context) error {
			_, err := c2.ServerLive(ctx, &pb.ServerLiveRequest{})
			return err
		}, inferEncoded(conn2, req)},
	}
	if err := sides[1].infer(ctx); err != nil {
		b.Fatalf("second server: %v", err)
	}
	b.Run("p99-at-2000", func(b *testing.B) {
		const rate, rounds = 2000, 16
		per := max(b.N/rounds, rate/4) // at least a quarter second a round
		var el, il, elag, ilag []time.Duration
		var ratios []float64 // each round's infer p99 / empty p99
		for r := range rounds {
			// Round r: ModelInfer on server r%2, the empty call on the
			// other; ModelInfer's calls go first in rounds 0, 1, 4, 5, ...
			e, i := sides[1-r%2].empty, sides[r%2].infer
			var l, g [][]time.Duration
			if r%4 < 2 {
				l, g = pace(b, rate, per, i, e)
			} else {
				l, g = pace(b, rate, per, e, i)
				l[0], l[1], g[0], g[1] = l[1], l[0], g[1], g[0]
			}
			il, el = append(il, l[0]...), append(el, l[1]...)
			ilag, elag = append(ilag, g[0]...), append(elag, g[1]...)
			ratios = append(ratios, float64(percentile(l[0], 0.99))/float64(percentile(l[1], 0.99)))
		}
		ep, ip := percentile(el, 0.99), percentile(il, 0.99)
		b.ReportMetric(ms(ep), "empty-p99-ms")
		b.ReportMetric(ms(ip), "infer-p99-ms")
		b.ReportMetric(float64(ip)/float64(ep), "p99-ratio")
		// A stall of one server process (the machine is shared) lands in
		// one round on one side: the median of the rounds' ratios is the
		// figure such stalls do not decide.
		slices.Sort(ratios)
		b.ReportMetric(ratios[len(ratios)/4], "p99-ratio-q1-round")
		b.ReportMetric(ratios[len(ratios)/2], "p99-ratio-median-round")
		b.ReportMetric(ratios[3*len(ratios)/4], "p99-ratio-q3-round")
		b.ReportMetric(ms(percentile(el, 0.5)), "empty-p50-ms")
		b.ReportMetric(ms(percentile(il, 0.5)), "infer-p50-ms")
		lag := append(slices.Clone(elag), ilag...)
		b.ReportMetric(ms(percentile(lag, 0.5)), "pacer-lag-p50-ms")
		b.ReportMetric(ms(percentile(lag, 0.99)), "pacer-lag-p99-ms")
	})
}

// alternate runs first and second in rounds, A-B then B-A: whichever goes
// second pays for the garbage the first left, so the order alternates.
func alternate(rounds int, first, second func()) {
	for r := range rounds {
		if r%2 == 0 {
			first()
			second()
		} else {
			second()
			first()
		}
	}
}

// side is one side of a comparison: a call and the server process that
// answers it.
type side struct {
	child *childServer
	call  func(ctx context.Context) error
}

// compareRounds runs b's sub-benchmarks prefix+"1" and prefix+"64" (the
// callers), each running first's and second's calls in 10 alternating
// rounds, and hands report their costs and the calls made on each side.
func compareRounds(b *testing.B, prefix string, first, second side, report func(b *testing.B, first, second cost, n float64)) {
	for _, conc := range []int{1, 64} {
		b.Run(prefix+strconv.Itoa(conc), func(b *testing.B) {
			const rounds = 10
			per := max(b.N/rounds, conc)
			var f, s cost // wall and server CPU
			alternate(rounds,
				func() { f.add(runServer(b, first.child, per, conc, first.call)) },
				func() { s.add(runServer(b, second.child, per, conc, second.call)) })
			report(b, f, s, float64(per*rounds))
		})
	}
}

// runServer is run with the server process's CPU time beside this
// (the client's) process's.
func runServer(b *testing.B, child *childServer, n, c int, f func(ctx context.Context) error) cost {
	cpu0 := child.cpu(b)
	r := run(b, n, c, f)
	return cost{wall: r.wall, cpu: child.cpu(b) - cpu0, client: r.cpu}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkTracingUnsampled prices tracing that is configured but samples
// nothing (OTEL_TRACES_SAMPLER=traceidratio with argument 0, the console
// exporter, so nothing leaves the process): two server processes, one
// without tracing and one with it, answer the same 1-row ModelInfer in
// alternating rounds, and the server CPU per call of each is reported with
// their ratio. The traced one still extracts every call's trace context
// and asks the sampler (telemetry.GRPCServerSpans).
func BenchmarkTracingUnsampled(b *testing.B) {
	plain := startChild(b, "OTEL_TRACES_EXPORTER=none")
	traced := startChild(b, "OTEL_TRACES_EXPORTER=console", "OTEL_TRACES_SAMPLER=traceidratio", "OTEL_TRACES_SAMPLER_ARG=0")
	req := encodeRequest(b, fraudRequest(1, false))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	calls := make([]func(context.Context) error, 2)
	for i, child := range []*childServer{plain, traced} {
		conn, err := grpc.NewClient(child.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), withClientCodec())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		calls[i] = inferEncoded(conn, req)
		if err := calls[i](ctx); err != nil {
			b.Fatalf("server: %v", err)
		}
	}
	compareRounds(b, "c", side{plain, calls[0]}, side{traced, calls[1]}, func(b *testing.B, p, t cost, n float64) {
		b.ReportMetric(float64(p.cpu.Nanoseconds())/n/1000, "untraced-srv-cpu-µs")
		b.ReportMetric(float64(t.cpu.Nanoseconds())/n/1000, "unsampled-srv-cpu-µs")
		b.ReportMetric(float64(t.cpu)/float64(p.cpu), "srv-cpu-ratio")
		b.ReportMetric(p.wall.Seconds()/t.wall.Seconds(), "throughput-ratio")
	})
}
