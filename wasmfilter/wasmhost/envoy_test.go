package wasmhost_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
	"github.com/maestro-ml/maestro/wasmfilter/wasmhost"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// Guest modules that must fail, each built from testdata.
const (
	initCall    = "github.com/maestro-ml/maestro/wasmfilter/wasmhost/testdata/initcall"
	badWASI     = "github.com/maestro-ml/maestro/wasmfilter/wasmhost/testdata/badwasi"
	mallocGuest = "github.com/maestro-ml/maestro/wasmfilter/wasmhost/testdata/mallocguest"
)

// recordCalls returns a Config.Trace that records the guest calls, and a
// function that takes those recorded so far.
func recordCalls() (trace func(string), take func() []string) {
	var mu sync.Mutex
	var calls []string
	trace = func(name string) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, name)
	}
	take = func() []string {
		mu.Lock()
		defer mu.Unlock()
		c := calls
		calls = nil
		return c
	}
	return trace, take
}

func header(h [][2]string, key string) string {
	for _, kv := range h {
		if kv[0] == key {
			return kv[1]
		}
	}
	return ""
}

// A filter that pauses in request headers and waits for the body is the
// REST fan-out defect: cpp-host turns the pause into stop-all-iteration,
// Envoy holds the body back and the request hangs, unless the plugin sets
// allow_on_headers_stop_iteration.
func TestPauseFromHeadersStopsAllIterationUnlessAllowed(t *testing.T) {
	up := upstream(t)
	clusters := map[string]wasmhost.Cluster{"backend": {Address: strings.TrimPrefix(up.URL, "http://")}}
	t.Run("default holds the body and stalls", func(t *testing.T) {
		vm := newVM(t, wasmhost.Config{Clusters: clusters})
		s, err := vm.NewStream()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { endStream(t, s) })
		if a, err := s.RequestHeaders([][2]string{{":path", "/wait-body"}}, false); err != nil || a != pw.ActionPause {
			t.Fatalf("headers: %v, %v", a, err)
		}
		if _, err := s.RequestBody([]byte("hello"), true); err != nil {
			t.Fatal(err)
		}
		if !s.Holding(false) {
			t.Fatal("the host gave the body to a filter stopped in headers")
		}
		if err := s.AwaitResume(testCtx(t), false); !errors.Is(err, wasmhost.ErrStalled) {
			t.Fatalf("err = %v, want ErrStalled", err)
		}
		if s.LocalResponse() != nil {
			t.Fatal("the filter answered without seeing the body")
		}
		_, err = vm.RoundTrip(testCtx(t), "backend", wasmhost.Request{Path: "/wait-body", Body: []byte("hello")})
		if !errors.Is(err, wasmhost.ErrStalled) {
			t.Fatalf("round trip: err = %v, want ErrStalled", err)
		}
	})
	t.Run("allow_on_headers_stop_iteration delivers the body", func(t *testing.T) {
		vm := newVM(t, wasmhost.Config{Clusters: clusters, AllowOnHeadersStopIteration: true})
		resp, err := vm.RoundTrip(testCtx(t), "backend", wasmhost.Request{Path: "/wait-body", Body: []byte("hello"), ChunkSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 200 || string(resp.Body) != "hello" || resp.Header("x-body-calls") != "3" {
			t.Fatalf("response = %d %q calls %s", resp.Status, resp.Body, resp.Header("x-body-calls"))
		}
	})
}

// Continuing a stream stopped in headers releases what the host held, in
// one body callback, as Envoy's continueDecoding does.
func TestContinueReleasesTheHeldBody(t *testing.T) {
	up := upstream(t)
	vm := newVM(t, wasmhost.Config{Clusters: map[string]wasmhost.Cluster{"backend": {Address: strings.TrimPrefix(up.URL, "http://")}}})
	resp, err := vm.RoundTrip(testCtx(t), "backend", wasmhost.Request{Path: "/wait-callout-then-body",
		Body: []byte("hello world"), ChunkSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Body) != "hello world" || resp.Header("x-body-calls") != "1" {
		t.Fatalf("response %q, body calls %s; want the whole body in one call", resp.Body, resp.Header("x-body-calls"))
	}
}

// Envoy's incrementMetric refuses a counter increment that is not
// positive; the old test host accepted zero.
func TestCounterIncrementByZeroIsBadArgument(t *testing.T) {
	vm := newVM(t, wasmhost.Config{})
	s, err := vm.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { endStream(t, s) })
	if _, err := s.RequestHeaders([][2]string{{":path", "/count-zero"}}, true); err != nil {
		t.Fatal(err)
	}
	if got := header(s.RequestHeaderMap(), "x-increment-zero"); got != "true" {
		t.Fatalf("increment by 0 gave BadArgument: %s", got)
	}
}

// Only cpp-host's allow-list works during _initialize: a Go init function
// that defines a metric traps and the module does not load.
func TestProxyCallFromInitFailsToLoad(t *testing.T) {
	_, err := wasmtest.Load(t, initCall).NewVM(context.Background(), wasmhost.Config{})
	if !errors.Is(err, wasmhost.ErrRestrictedCallback) || !strings.Contains(err.Error(), "env.proxy_define_metric") {
		t.Fatalf("err = %v, want a restricted_callback trap naming env.proxy_define_metric", err)
	}
}

// Inside proxy_on_memory_allocate cpp-host allows even fewer calls.
func TestProxyCallFromAllocatorTraps(t *testing.T) {
	_, err := wasmtest.Load(t, mallocGuest).NewVM(context.Background(), wasmhost.Config{PluginConfig: []byte("cfg")})
	if !errors.Is(err, wasmhost.ErrRestrictedCallback) || !strings.Contains(err.Error(), "env.proxy_define_metric") {
		t.Fatalf("err = %v, want a restricted_callback trap naming env.proxy_define_metric", err)
	}
}

func TestUnknownWASIImportFailsToLink(t *testing.T) {
	_, err := wasmhost.Compile(context.Background(), wasmtest.Build(t, badWASI))
	if err == nil || !strings.Contains(err.Error(), "wasi_snapshot_preview1.sock_open") {
		t.Fatalf("err = %v, want a link error naming wasi_snapshot_preview1.sock_open", err)
	}
}

// The guest sees cpp-host's WASI: no files, no stdin, random and clocks
// work, sleeping returns, stdout and stderr go to the log.
func TestWASIIsCppHosts(t *testing.T) {
	vm := newVM(t, wasmhost.Config{})
	s, err := vm.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { endStream(t, s) })
	if _, err := s.RequestHeaders([][2]string{{":path", "/wasi"}}, true); err != nil {
		t.Fatal(err)
	}
	h := s.RequestHeaderMap()
	for _, k := range []string{"x-wasi-open-failed", "x-wasi-stdin-failed", "x-wasi-random", "x-wasi-slept"} {
		if header(h, k) != "true" {
			t.Errorf("%s = %q, want true", k, header(h, k))
		}
	}
	want := map[string]pw.LogLevel{"probe wrote to stdout": pw.LogLevelInfo, "probe wrote to stderr": pw.LogLevelError}
	for _, e := range vm.Logs() {
		if lvl, ok := want[e.Message]; ok && lvl == e.Level {
			delete(want, e.Message)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing log lines %v in %+v", want, vm.Logs())
	}
}

// The order of guest calls follows cpp-host's start-up and Envoy's stream
// end (access log before the filters are destroyed).
func TestLifecycleOrder(t *testing.T) {
	up := upstream(t)
	trace, take := recordCalls()
	vm := newVM(t, wasmhost.Config{Trace: trace,
		Clusters: map[string]wasmhost.Cluster{"backend": {Address: strings.TrimPrefix(up.URL, "http://")}}})
	steps := []struct {
		name string
		run  func() error
		want []string
	}{
		{"start", func() error { return nil },
			[]string{"_initialize", "proxy_on_context_create", "proxy_on_vm_start", "proxy_on_configure"}},
		{"request with a callout", func() error {
			_, err := vm.RoundTrip(testCtx(t), "backend", wasmhost.Request{Path: "/callout", Body: []byte("b")})
			return err
		}, []string{"proxy_on_context_create", "proxy_on_request_headers", "proxy_on_http_call_response",
			"proxy_on_request_body", "proxy_on_response_headers", "proxy_on_response_body",
			"proxy_on_log", "proxy_on_done", "proxy_on_delete"}},
		{"tick", vm.Tick, []string{"proxy_on_tick"}},
		{"close", vm.Close, []string{"proxy_on_done", "proxy_on_delete"}},
	}
	for _, step := range steps {
		if err := step.run(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := take(); !slices.Equal(got, step.want) {
			t.Errorf("%s: calls %v, want %v", step.name, got, step.want)
		}
	}
}

// Changing request headers clears Envoy's route cache; the embedder hears
// of it. Response header changes do not.
func TestRequestHeaderChangeClearsTheRouteCache(t *testing.T) {
	vm := newVM(t, wasmhost.Config{})
	cleared := 0
	s, err := vm.OpenStream(wasmhost.StreamOptions{
		OnRouteCacheCleared: func() { cleared++ },
		Properties: func(path string) ([]byte, bool) {
			if path == "route_name" {
				return []byte("route-a"), true
			}
			return nil, false
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { endStream(t, s) })
	if _, err := s.RequestHeaders([][2]string{{":path", "/"}}, true); err != nil {
		t.Fatal(err)
	}
	if !s.RouteCacheCleared() || cleared == 0 {
		t.Fatalf("request header change: cleared %v, callbacks %d", false, cleared)
	}
	if s.RouteCacheCleared() {
		t.Fatal("RouteCacheCleared did not reset")
	}
	if got := header(s.RequestHeaderMap(), "x-route-name"); got != "route-a" {
		t.Fatalf("route_name property seen by the filter = %q", got)
	}
	before := cleared
	if _, err := s.ResponseHeaders([][2]string{{":status", "200"}}, true); err != nil {
		t.Fatal(err)
	}
	if s.RouteCacheCleared() || cleared != before {
		t.Fatal("a response header change cleared the route cache")
	}
}

// Envoy forgets the request headers once their callback continued: a read
// from a body callback is BadArgument. Request trailers do not exist
// before their callback (or the end-of-stream body callback).
func TestRequestHeadersAreGoneAfterContinue(t *testing.T) {
	up := upstream(t)
	vm := newVM(t, wasmhost.Config{Clusters: map[string]wasmhost.Cluster{"backend": {Address: strings.TrimPrefix(up.URL, "http://")}}})
	resp, err := vm.RoundTrip(testCtx(t), "backend", wasmhost.Request{Path: "/late-headers", Body: []byte("b")})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header("x-late-get-bad-argument"); got != "true" {
		t.Fatalf("late header read was BadArgument: %q", got)
	}
	// From the headers callback: adding request trailers is BadArgument,
	// the body reads empty, the plugin configuration is NotFound.
	if got := resp.Header("x-early-trailer-bad-argument"); got != "true true true" {
		t.Fatalf("early access from the headers callback: %q, want \"true true true\"", got)
	}
}

func TestGRPCCallToUnknownClusterIsParseFailure(t *testing.T) {
	vm := newVM(t, wasmhost.Config{})
	s, err := vm.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { endStream(t, s) })
	if _, err := s.RequestHeaders([][2]string{{":path", "/grpc-unknown-cluster"}}, true); err != nil {
		t.Fatal(err)
	}
	if got := header(s.RequestHeaderMap(), "x-dispatch-error"); got != "true" {
		t.Fatalf("grpc call to an unknown cluster gave ParseFailure: %s", got)
	}
}

// A trap fails the VM; the trapping stream and every later one are
// answered per the failure policy, as Envoy's CHECK_FAIL and failStream do.
func TestTrapFailsTheVMAndPolicyAnswers(t *testing.T) {
	up := upstream(t)
	clusters := map[string]wasmhost.Cluster{"backend": {Address: strings.TrimPrefix(up.URL, "http://")}}
	for name, failOpen := range map[string]bool{"fail closed": false, "fail open": true} {
		t.Run(name, func(t *testing.T) {
			vm := newVM(t, wasmhost.Config{Clusters: clusters, FailOpen: failOpen})
			s, err := vm.NewStream()
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.RequestHeaders([][2]string{{":path", "/panic"}}, true)
			if !errors.Is(err, wasmhost.ErrClosed) || !strings.Contains(err.Error(), "probe asked to panic") {
				t.Fatalf("trap: err = %v", err)
			}
			if vm.Failed() == nil {
				t.Fatal("the VM did not fail")
			}
			if local := s.LocalResponse(); (local != nil) == failOpen {
				t.Fatalf("trapping stream's local response = %+v", local)
			}
			if err := s.Done(); err != nil {
				t.Fatalf("done on a failed VM: %v", err)
			}
			resp, err := vm.RoundTrip(testCtx(t), "backend", wasmhost.Request{Path: "/"})
			if err != nil {
				t.Fatal(err)
			}
			if failOpen {
				if resp.Status != 200 || resp.Header("x-saw-probe") != "" {
					t.Fatalf("fail open: %d, x-saw-probe %q; want the upstream without the filter",
						resp.Status, resp.Header("x-saw-probe"))
				}
				return
			}
			if resp.Status != 503 || resp.Local == nil || resp.Local.Details != "wasm_fail_stream" ||
				resp.Local.GRPCStatus != int32(codes.Unavailable) || len(resp.Body) != 0 {
				t.Fatalf("fail closed: %+v", resp)
			}
			// To a gRPC client Envoy's local reply is trailers-only.
			resp, err = vm.RoundTrip(testCtx(t), "backend", wasmhost.Request{Method: "POST", Path: "/svc/M",
				Headers: [][2]string{{"content-type", "application/grpc"}}})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != 200 || resp.Header("grpc-status") != "14" || len(resp.Body) != 0 {
				t.Fatalf("fail closed, gRPC: %d grpc-status %q", resp.Status, resp.Header("grpc-status"))
			}
		})
	}
}

// fakeUpstreams is an embedder's Upstreams that answers from memory.
type fakeUpstreams struct {
	mu   sync.Mutex
	seen []string // cluster and path of each request
}

func (f *fakeUpstreams) HasCluster(name string) bool { return name == "backend" || name == "grpc" }

func (f *fakeUpstreams) HTTP(_ context.Context, cluster string, req *wasmhost.Request) (*wasmhost.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := header(req.Headers, ":path")
	f.seen = append(f.seen, cluster+" "+path+" "+header(req.Headers, "x-callout"))
	return &wasmhost.Response{Status: 200, Headers: [][2]string{{":status", "200"}}, Body: []byte("fake " + path)}, nil
}

func (f *fakeUpstreams) GRPC(context.Context, string, *wasmhost.GRPCCall) ([]byte, error) {
	return nil, status.Error(codes.Unimplemented, "fake")
}

func TestCalloutsGoThroughTheEmbeddersUpstreams(t *testing.T) {
	f := &fakeUpstreams{}
	vm := newVM(t, wasmhost.Config{Upstreams: f})
	resp, err := vm.RoundTrip(testCtx(t), "backend", wasmhost.Request{Path: "/callout"})
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Body) != "fake /callout" {
		t.Fatalf("body %q", resp.Body)
	}
	want := []string{"backend /side/callout ", "backend /callout 200 fake /side/callout"}
	if !slices.Equal(f.seen, want) {
		t.Fatalf("upstream saw %q, want %q", f.seen, want)
	}
}

// A queue registered by one VM is resolved and fed by another; the
// registering VM hears of it in proxy_on_queue_ready, on its own turn.
func TestSharedQueueAcrossVMs(t *testing.T) {
	queues := wasmhost.NewSharedQueues()
	owner := newVM(t, wasmhost.Config{Queues: queues, VMID: "vm-a"})
	feeder := newVM(t, wasmhost.Config{Queues: queues, VMID: "vm-a"})
	send := func(vm *wasmhost.VM, path string) [][2]string {
		t.Helper()
		s, err := vm.NewStream()
		if err != nil {
			t.Fatal(err)
		}
		defer endStream(t, s)
		if _, err := s.RequestHeaders([][2]string{{":path", path}}, true); err != nil {
			t.Fatal(err)
		}
		return s.RequestHeaderMap()
	}
	if got := header(send(owner, "/queue-register"), "x-queue"); got != "1 <nil>" {
		t.Fatalf("register: %q", got)
	}
	h := send(feeder, "/queue-put/job-1")
	if header(h, "x-queue") != "1 <nil>" || header(h, "x-resolve-unknown-not-found") != "true" {
		t.Fatalf("enqueue: %q", h)
	}
	for _, e := range owner.Logs() {
		if e.Message == "queue got job-1" {
			t.Fatal("proxy_on_queue_ready ran inside the feeder's call")
		}
	}
	if err := owner.DeliverQueueReady(); err != nil {
		t.Fatal(err)
	}
	got := false
	for _, e := range owner.Logs() {
		got = got || e.Message == "queue got job-1"
	}
	if !got {
		t.Fatalf("owner logs %+v lack the queued item", owner.Logs())
	}
}

// A local response makes the callback's answer a stop even when the guest
// returns Continue (cpp-host's stopNextIteration): the upstream is not
// called.
func TestLocalResponseStopsEvenOnContinue(t *testing.T) {
	f := &fakeUpstreams{}
	vm := newVM(t, wasmhost.Config{Upstreams: f})
	s, err := vm.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { endStream(t, s) })
	a, err := s.RequestHeaders([][2]string{{":path", "/local-continue"}}, true)
	if err != nil || a != pw.ActionContinue {
		t.Fatalf("guest answer %v, %v", a, err)
	}
	if !s.Paused(false) {
		t.Fatal("the stream went on after a local response")
	}
	resp, err := vm.RoundTrip(testCtx(t), "backend", wasmhost.Request{Path: "/local-continue"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 403 || len(f.seen) != 0 {
		t.Fatalf("status %d, upstream saw %q", resp.Status, f.seen)
	}
}

// endStream ends s as Envoy does at the end of a stream; a filter that
// fails in proxy_on_log or proxy_on_done fails the test.
func endStream(t testing.TB, s *wasmhost.Stream) {
	t.Helper()
	if err := s.Done(); err != nil {
		t.Errorf("end of stream: %v", err)
	}
}
