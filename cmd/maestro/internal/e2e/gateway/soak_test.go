package gateway_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/internal/e2etest"
)

// Sustained load (`make soak`): the figure is 2,000 req/s for 60 s
// with no error and flat memory. It runs only with MAESTRO_SOAK=1, outside
// `make test`: a minute of full load does not belong in every test run.
const (
	soakRate     = 2000
	soakDuration = 60 * time.Second
	// soakWorkers bounds the requests in flight; a pacer hands them work.
	soakWorkers = 64
	// soakHeapSlack is how much the live heap may grow over the run
	// (after a GC at each end) before memory counts as growing: filter
	// stats and pools settle within it, a per-request leak does not.
	soakHeapSlack = 16 << 20
)

// TestGatewaySoak drives unary OIP gRPC through the gateway (slo filter
// on) at soakRate for soakDuration, open loop: a pacer issues requests on
// schedule whatever the answers' speed. It asserts no call fails, the rate
// was held (at least 95% of the scheduled calls completed in the window),
// the live heap at the end is where it was after the first 10 s of load,
// and the goroutines come back to where they were before.
func TestGatewaySoak(t *testing.T) {
	if os.Getenv("MAESTRO_SOAK") != "1" {
		t.Skip("sustained-load check: run with MAESTRO_SOAK=1 (make soak)")
	}
	dir := e2etest.WasmDir(t)
	repo := t.TempDir()
	inferencetest.WriteModel(t, repo, inferencetest.TestModel{Name: "fraud"})
	srv := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1", ModelDir: repo})
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	e2etest.ReplaceFile(t, path, e2etest.SLOPolicy(dir, srv.GRPCAddr))
	cp := e2etest.StartPlaintext(t, path, "127.0.0.1:0")
	addr := e2etest.StartGateway(t, "gw-soak", cp.XDS, nil).WaitLive(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := pb.NewGRPCInferenceServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-maestro-model", "fraud")
	req := e2etest.InferRequest("fraud")
	for range 2 * soakWorkers {
		if _, err := client.ModelInfer(ctx, req); err != nil {
			t.Fatalf("warm-up: %v", err)
		}
	}
	idleHeap, gr0 := liveHeap(), runtime.NumGoroutine()
	// heap0 is the live heap after the first sample period under load:
	// the wasm VMs' linear memory and the HTTP/2 buffers grow once to the
	// load's working set (wasm memory never shrinks); growth after that is
	// what a leak looks like.
	var heap0 uint64

	work := make(chan struct{}, soakRate) // a second of backlog at most
	var done, failed, dropped atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range soakWorkers {
		wg.Go(func() {
			for range work {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := client.ModelInfer(cctx, req)
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				done.Add(1)
			}
		})
	}
	// The pacer issues the calls due at each millisecond tick, so a late
	// tick catches up instead of lowering the rate.
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	issued := int64(0)
	var heapMax uint64
	nextSample := start.Add(10 * time.Second)
	for now := range tick.C {
		el := now.Sub(start)
		if el >= soakDuration {
			break
		}
		for due := int64(el.Seconds() * soakRate); issued < due; issued++ {
			select {
			case work <- struct{}{}:
			default:
				dropped.Add(1) // the gateway is a second behind: not held
			}
		}
		if now.After(nextSample) {
			if heap0 == 0 {
				heap0 = liveHeap()
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			heapMax = max(heapMax, ms.HeapInuse)
			t.Logf("%3.0fs: %d ok, %d failed, %d dropped, heap in use %d MiB, %d goroutines",
				el.Seconds(), done.Load(), failed.Load(), dropped.Load(), ms.HeapInuse>>20, runtime.NumGoroutine())
			nextSample = nextSample.Add(10 * time.Second)
		}
	}
	tick.Stop()
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	heap1 := liveHeap()
	t.Logf("%d calls in %v (%.0f req/s), %d failed, %d dropped; live heap idle %d, after 10 s %d, at the end %d KiB (max in use %d MiB); goroutines %d -> %d",
		done.Load(), elapsed.Round(time.Millisecond), float64(done.Load())/elapsed.Seconds(), failed.Load(), dropped.Load(),
		idleHeap>>10, heap0>>10, heap1>>10, heapMax>>20, gr0, runtime.NumGoroutine())
	if n := failed.Load(); n > 0 {
		t.Errorf("%d calls failed, first: %v", n, firstErr.Load())
	}
	if want := int64(float64(soakRate) * soakDuration.Seconds() * 0.95); done.Load() < want {
		t.Errorf("%d calls completed, want at least %d (%d req/s for %v): the rate was not held", done.Load(), want, soakRate, soakDuration)
	}
	if heap1 > heap0+soakHeapSlack {
		t.Errorf("live heap grew from %d KiB after 10 s of load to %d KiB at the end", heap0>>10, heap1>>10)
	}
	waitGoroutines(t, gr0)
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// waitGoroutines waits (bounded) for the goroutine count to come back to
// about where it was: the streams of the run must all have ended.
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	const slack = 16
	deadline := time.Now().Add(waitLimit)
	for runtime.NumGoroutine() > before+slack {
		if time.Now().After(deadline) {
			t.Errorf("goroutines %d after the run, %d before", runtime.NumGoroutine(), before)
			return
		}
		time.Sleep(50 * time.Millisecond) // polling a count; nothing to wait on
	}
}
