package wasmhost_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
	"github.com/maestro-ml/maestro/wasmfilter/wasmhost"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

const probe = "github.com/maestro-ml/maestro/wasmfilter/wasmhost/testdata/probe"

// upstream is a real HTTP server that echoes what reached it in headers.
func upstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case strings.HasPrefix(r.URL.Path, "/side") && strings.HasSuffix(r.URL.Path, "slow"):
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
			return
		case strings.HasPrefix(r.URL.Path, "/side"):
			fmt.Fprint(w, "side:"+r.URL.Path)
			return
		}
		w.Header().Set("X-Saw-Probe", r.Header.Get("X-Probe"))
		w.Header().Set("X-Saw-Callout", r.Header.Get("X-Callout"))
		w.Header().Set("X-Saw-Grpc", r.Header.Get("X-Grpc"))
		w.Header().Set("X-Saw-Dispatch-Error", r.Header.Get("X-Dispatch-Error"))
		fmt.Fprintf(w, "got %s", body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// grpcServer is a real gRPC server with the standard health service.
func grpcServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	h := health.NewServer()
	h.SetServingStatus("ready", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, h)
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}

func newVM(t *testing.T, cfg wasmhost.Config) *wasmhost.VM {
	t.Helper()
	vm, err := wasmtest.Load(t, probe).NewVM(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStartUpRunsConfigureWithConfigAndProperties(t *testing.T) {
	vm := newVM(t, wasmhost.Config{PluginConfig: []byte("cfg-1"),
		Properties: map[string][]byte{"plugin_name": []byte("probe-plugin")}})
	logs := vm.Logs()
	if len(logs) == 0 || logs[0].Message != "configured cfg-1 as probe-plugin" {
		t.Fatalf("logs = %+v", logs)
	}
	if vm.TickPeriod() != time.Second {
		t.Fatalf("tick period = %v", vm.TickPeriod())
	}
}

func TestRejectedVMConfigurationFails(t *testing.T) {
	_, err := wasmtest.Load(t, probe).NewVM(context.Background(), wasmhost.Config{VMConfig: []byte("reject")})
	if err == nil || !strings.Contains(err.Error(), "proxy_on_vm_start rejected") {
		t.Fatalf("err = %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	up := upstream(t)
	gaddr := grpcServer(t)
	clusters := map[string]wasmhost.Cluster{
		"backend": {Address: strings.TrimPrefix(up.URL, "http://")},
		"grpc":    {Address: gaddr},
	}
	tests := map[string]struct {
		req        wasmhost.Request
		status     int
		header     [2]string
		body       string
		wantLocal  bool
		respHeader string
	}{
		"plain request is modified on the way": {
			req: wasmhost.Request{Path: "/plain"}, status: 200, header: [2]string{"x-saw-probe", "seen"}, body: "got ",
		},
		"local response skips the upstream": {
			req: wasmhost.Request{Path: "/local"}, status: 418, header: [2]string{"x-probe", "local"},
			body: "short and stout", wantLocal: true,
		},
		"http callout result reaches the upstream": {
			req: wasmhost.Request{Path: "/callout"}, status: 200,
			header: [2]string{"x-saw-callout", "200 side:/side/callout"}, body: "got ",
		},
		"timed-out callout is reported as failed": {
			req: wasmhost.Request{Path: "/callout-slow"}, status: 200,
			header: [2]string{"x-saw-callout", "failed"}, body: "got ",
		},
		"grpc callout success": {
			req: wasmhost.Request{Path: "/grpc/ready"}, status: 200,
			header: [2]string{"x-saw-grpc", `0  "\b\x01"`}, body: "got ",
		},
		"grpc callout failure carries status and message": {
			req: wasmhost.Request{Path: "/grpc/missing"}, status: 200,
			header: [2]string{"x-saw-grpc", `5 unknown service ""`}, body: "got ",
		},
		"unknown cluster is a bad argument": {
			req: wasmhost.Request{Path: "/unknown-cluster"}, status: 200,
			header: [2]string{"x-saw-dispatch-error", "true"}, body: "got ",
		},
		"buffered body is rewritten": {
			req: wasmhost.Request{Method: "POST", Path: "/upper", Body: []byte("hello")}, status: 200, body: "got HELLO",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			vm := newVM(t, wasmhost.Config{Clusters: clusters})
			resp, err := vm.RoundTrip(testCtx(t), "backend", tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tc.status || string(resp.Body) != tc.body {
				t.Fatalf("got %d %q, want %d %q", resp.Status, resp.Body, tc.status, tc.body)
			}
			if tc.header[0] != "" && resp.Header(tc.header[0]) != tc.header[1] {
				t.Fatalf("%s = %q, want %q (headers %q)", tc.header[0], resp.Header(tc.header[0]), tc.header[1], resp.Headers)
			}
			if (resp.Local != nil) != tc.wantLocal {
				t.Fatalf("local = %+v, want local %v", resp.Local, tc.wantLocal)
			}
			// The local reply passes through the response callbacks too.
			if got := resp.Header("x-probe-response"); got != fmt.Sprint(tc.status) {
				t.Fatalf("x-probe-response = %q", got)
			}
			if got := vm.Stats().Value("probe_requests_total"); got != 1 {
				t.Fatalf("requests counter = %d", got)
			}
			if got := vm.Stats().Value("probe_inflight"); got != 0 {
				t.Fatalf("inflight gauge = %d after the stream ended", got)
			}
			if got := vm.Stats().Samples("probe_response_bytes"); len(got) != 1 || got[0] != uint64(len(tc.body)) {
				t.Fatalf("histogram = %v", got)
			}
		})
	}
}

func TestChunkedBodyIsBufferedWhilePaused(t *testing.T) {
	vm := newVM(t, wasmhost.Config{})
	s, err := vm.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	if a, err := s.RequestHeaders([][2]string{{":path", "/upper"}, {":method", "POST"}}, false); err != nil || a != pw.ActionContinue {
		t.Fatalf("headers: %v %v", a, err)
	}
	for i, chunk := range []string{"ab", "cd", "ef"} {
		eos := i == 2
		a, err := s.RequestBody([]byte(chunk), eos)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]pw.Action{false: pw.ActionPause, true: pw.ActionContinue}[eos]; a != want {
			t.Fatalf("chunk %d action = %v, want %v", i, a, want)
		}
	}
	if got := string(s.RequestBodyBytes()); got != "ABCDEF" {
		t.Fatalf("body = %q", got)
	}
	// The last chunk's Continue resumes the stream the earlier chunks
	// stopped, as in Envoy: nothing is left to wait for.
	if s.Paused(false) {
		t.Fatal("stream still paused after the body callback continued")
	}
	if err := s.AwaitResume(t.Context(), false); err != nil {
		t.Fatalf("AwaitResume after the body continued: %v", err)
	}
	if err := s.Done(); err != nil {
		t.Fatal(err)
	}
	logs := vm.Logs()
	if last := logs[len(logs)-1]; last.Message != fmt.Sprintf("done %d /upper", s.ID()) || last.Level != pw.LogLevelDebug {
		t.Fatalf("last log = %+v", last)
	}
}

func TestPausedStreamWithoutCalloutStalls(t *testing.T) {
	vm := newVM(t, wasmhost.Config{})
	s, err := vm.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequestHeaders([][2]string{{":path", "/upper"}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequestBody([]byte("x"), false); err != nil {
		t.Fatal(err)
	}
	if err := s.AwaitResume(testCtx(t), false); !errors.Is(err, wasmhost.ErrStalled) {
		t.Fatalf("err = %v, want ErrStalled", err)
	}
}

func TestSharedDataAndStatsAcrossVMs(t *testing.T) {
	shared, stats := wasmhost.NewSharedData(), wasmhost.NewStats()
	a := newVM(t, wasmhost.Config{Shared: shared, Stats: stats})
	b := newVM(t, wasmhost.Config{Shared: shared, Stats: stats})
	for i := 0; i < 3; i++ {
		for _, vm := range []*wasmhost.VM{a, b} {
			if err := vm.Tick(); err != nil {
				t.Fatal(err)
			}
		}
	}
	v, _, ok := shared.Get("ticks")
	if !ok || string(v) != "6" {
		t.Fatalf("ticks = %q, %v; want 6 from both VMs", v, ok)
	}
	if last := b.Logs()[len(b.Logs())-1].Message; last != "tick 6" {
		t.Fatalf("b's last log = %q", last)
	}
	for _, vm := range []*wasmhost.VM{a, b} {
		if _, err := vm.RoundTrip(testCtx(t), "backend", wasmhost.Request{Path: "/local"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := stats.Value("probe_requests_total"); got != 2 {
		t.Fatalf("shared counter = %d, want 2", got)
	}
}

func TestSharedDataCAS(t *testing.T) {
	d := wasmhost.NewSharedData()
	if err := d.Set("k", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	_, cas, _ := d.Get("k")
	if err := d.Set("k", []byte("2"), cas); err != nil {
		t.Fatal(err)
	}
	if err := d.Set("k", []byte("3"), cas); !errors.Is(err, pw.ErrCasMismatch) {
		t.Fatalf("stale cas: err = %v", err)
	}
	if v, _, _ := d.Get("k"); string(v) != "2" {
		t.Fatalf("value = %q", v)
	}
}

func TestGuestPanicClosesTheVM(t *testing.T) {
	vm := newVM(t, wasmhost.Config{})
	_, err := vm.RoundTrip(testCtx(t), "backend", wasmhost.Request{Path: "/panic"})
	if err == nil || !strings.Contains(err.Error(), "probe asked to panic") {
		t.Fatalf("err = %v, want the guest's panic message", err)
	}
	if _, err := vm.NewStream(); !errors.Is(err, wasmhost.ErrClosed) {
		t.Fatalf("after a trap: err = %v, want ErrClosed", err)
	}
	if err := vm.Close(); err != nil {
		t.Fatalf("close after trap: %v", err)
	}
}

// TestLogsAreBounded: a VM logging on every tick keeps only its recent
// lines, the newest last, so a long-running gateway's memory stays flat.
func TestLogsAreBounded(t *testing.T) {
	vm := newVM(t, wasmhost.Config{})
	const ticks = wasmhost.MaxLogs + wasmhost.MaxLogs/2 + 3
	for i := range ticks {
		if err := vm.Tick(); err != nil {
			t.Fatalf("tick %d: %v", i+1, err)
		}
	}
	logs := vm.Logs()
	if len(logs) > wasmhost.MaxLogs || len(logs) < wasmhost.MaxLogs/2 {
		t.Fatalf("%d log lines kept, want between %d and %d", len(logs), wasmhost.MaxLogs/2, wasmhost.MaxLogs)
	}
	if last := logs[len(logs)-1].Message; last != fmt.Sprintf("tick %d", ticks) {
		t.Fatalf("last line %q, want the newest tick %d", last, ticks)
	}
}
