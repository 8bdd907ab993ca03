package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maestro-ml/maestro/internal/gateway/router"
	"github.com/maestro-ml/maestro/internal/gateway/stats"
	"github.com/maestro-ml/maestro/internal/gateway/upstream"
	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
	"github.com/maestro-ml/maestro/wasmfilter/wasmhost"
)

// wasmState is what every wasm filter of the gateway shares, as Envoy's
// workers share them: compiled modules (one per file or digest), the stat
// store behind proxy_define_metric, shared data and queues.
type wasmState struct {
	log     *slog.Logger
	baseDir string

	mu       sync.Mutex
	modules  map[string]*wasmhost.Module
	stats    *wasmhost.Stats
	shared   *wasmhost.SharedData
	queues   *wasmhost.SharedQueues
	exported *stats.Store
}

func newWasmState(log *slog.Logger, baseDir string) *wasmState {
	exported := stats.New()
	// Every histogram sample goes to the exported histogram as it is
	// recorded: the host keeps only the recent ones. A stat name is split
	// into family and tags (four regular expressions) once: filters record
	// several samples a request, and the names they define are bounded.
	var byName sync.Map // stat name -> *stats.Histogram
	record := func(name string, v uint64) {
		h, ok := byName.Load(name)
		if !ok {
			fam, labels := stats.WasmMetric(name)
			h, _ = byName.LoadOrStore(name, exported.Histogram(fam, labels...))
		}
		h.(*stats.Histogram).Record(float64(v))
	}
	return &wasmState{log: log, baseDir: baseDir, modules: map[string]*wasmhost.Module{}, stats: wasmhost.NewStatsFunc(record),
		shared: wasmhost.NewSharedData(), queues: wasmhost.NewSharedQueues(), exported: exported}
}

// module compiles the filter's code once per file (or remote digest).
func (w *wasmState) module(ctx context.Context, f *xdsconfig.WasmFilter, clusters *upstream.Manager) (*wasmhost.Module, error) {
	var key string
	if f.LocalFile != "" {
		key = w.path(f.LocalFile)
	} else {
		key = "sha256:" + strings.ToLower(f.Remote.SHA256)
	}
	w.mu.Lock()
	m := w.modules[key]
	w.mu.Unlock()
	if m != nil {
		return m, nil
	}
	var code []byte
	var err error
	if f.LocalFile != "" {
		code, err = os.ReadFile(key)
	} else {
		code, err = fetchRemote(ctx, f.Remote, clusters)
	}
	if err != nil {
		return nil, err
	}
	m, err = wasmhost.Compile(ctx, code)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", key, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if old := w.modules[key]; old != nil {
		_ = m.Close(ctx)
		return old, nil
	}
	w.modules[key] = m
	return m, nil
}

// path resolves a module file name as Envoy does, relative to the
// process's directory (here the configured base directory).
func (w *wasmState) path(name string) string {
	if filepath.IsAbs(name) || w.baseDir == "" {
		return name
	}
	return filepath.Join(w.baseDir, name)
}

// fetchRemote downloads remote code through its cluster and checks its
// digest, as Envoy's remote data source does.
func fetchRemote(ctx context.Context, r *xdsconfig.RemoteCode, clusters *upstream.Manager) ([]byte, error) {
	c := clusters.Get(r.Cluster)
	if c == nil {
		return nil, fmt.Errorf("remote code: cluster %q unknown", r.Cluster)
	}
	host, err := c.Pick()
	if err != nil {
		return nil, fmt.Errorf("remote code: cluster %q: %w", r.Cluster, err)
	}
	if r.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URI, nil)
	if err != nil {
		return nil, fmt.Errorf("remote code: %w", err)
	}
	req.URL.Scheme, req.URL.Host = c.Scheme(), host.Addr
	resp, err := c.Transport().RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("remote code %s: %w", r.URI, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("remote code %s: status %d", r.URI, resp.StatusCode)
	}
	code, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("remote code %s: %w", r.URI, err)
	}
	sum := sha256.Sum256(code)
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, r.SHA256) {
		return nil, fmt.Errorf("remote code %s: sha256 %s, want %s", r.URI, got, r.SHA256)
	}
	return code, nil
}

// load builds one ECDS filter: one VM per worker, each started with the
// plugin configuration, callouts going to the node's clusters.
func (w *wasmState) load(ctx context.Context, f *xdsconfig.WasmFilter, clusters *upstream.Manager) (Filter, error) {
	if f.Runtime != "" && f.Runtime != "envoy.wasm.runtime.v8" && f.Runtime != "envoy.wasm.runtime.wazero" {
		// The gateway runs every module in wazero; naming another
		// runtime is a request it cannot meet.
		return nil, fmt.Errorf("vm runtime %q unsupported", f.Runtime)
	}
	mod, err := w.module(ctx, f, clusters)
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	wf := &wasmFilter{cfg: f, cancel: cancel, ctx: fctx}
	for range runtime.GOMAXPROCS(0) {
		vm, err := mod.NewVM(fctx, wasmhost.Config{
			PluginConfig: f.Configuration, Upstreams: upstreams{clusters}, Stats: w.stats, Shared: w.shared, Queues: w.queues,
			VMID: f.VMID, AllowOnHeadersStopIteration: f.AllowOnHeadersStopIteration, FailOpen: f.FailOpen,
			Properties: map[string][]byte{"plugin_name": []byte(f.PluginName), "plugin_root_id": []byte(f.RootID)},
			Logger:     w.log.With("filter", f.Name),
		})
		if err != nil {
			_ = wf.Close()
			return nil, fmt.Errorf("start vm: %w", err)
		}
		wv := &worker{vm: vm}
		wf.workers = append(wf.workers, wv)
		if p := vm.TickPeriod(); p > 0 {
			wf.wg.Go(func() { wf.tick(wv, p) })
		}
	}
	return wf, nil
}

// writeStats writes the filters' stats as Prometheus families named as
// Envoy names wasm custom stats.
func (w *wasmState) writeStats(out io.Writer) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, name := range w.stats.Names() {
		m, ok := w.stats.Get(name)
		if !ok {
			continue
		}
		fam, labels := stats.WasmMetric(name)
		switch m.Type {
		case pw.MetricTypeCounter:
			c := w.exported.Counter(fam, labels...)
			if v := m.Value; v > c.Value() {
				c.Add(v - c.Value())
			}
		case pw.MetricTypeGauge:
			w.exported.Gauge(fam, labels...).Set(int64(m.Value))
		case pw.MetricTypeHistogram:
			// Recorded as they came (newWasmState); a histogram with no
			// sample yet is still written, as Envoy writes it.
			w.exported.Histogram(fam, labels...)
		}
	}
	return w.exported.WritePrometheus(out)
}

func (w *wasmState) close(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.modules {
		_ = m.Close(ctx)
	}
}

// worker is one VM, Envoy's per-worker copy of the plugin.
type worker struct {
	vm         *wasmhost.VM
	delivering atomic.Bool
}

// wasmFilter is one loaded ECDS filter.
type wasmFilter struct {
	cfg     *xdsconfig.WasmFilter
	ctx     context.Context
	cancel  context.CancelFunc
	workers []*worker
	next    atomic.Uint64
	wg      sync.WaitGroup

	// streams are wasmStreams whose stream is done, kept for the next:
	// each costs two allocations (itself and its property function).
	streams sync.Pool
	// routes are the route names the filter has seen, with their bytes
	// (the property's value): copy on write, bounded by maxRoutes.
	routesMu sync.Mutex
	routes   atomic.Pointer[map[string]*routeName]
}

// routeName is a route's name and the bytes proxy_get_property returns
// for it, made once per route rather than per request. Never changed.
type routeName struct {
	name  string
	bytes []byte
}

// maxRoutes bounds the route names kept; past it each request makes its
// own (route names come from the configuration, so this is generous).
const maxRoutes = 4096

func (f *wasmFilter) routeName(name string) *routeName {
	if m := f.routes.Load(); m != nil {
		if r, ok := (*m)[name]; ok {
			return r
		}
	}
	r := &routeName{name: name, bytes: []byte(name)}
	f.routesMu.Lock()
	defer f.routesMu.Unlock()
	old := f.routes.Load()
	if old != nil && len(*old) >= maxRoutes {
		return r
	}
	m := make(map[string]*routeName, 1)
	if old != nil {
		m = make(map[string]*routeName, len(*old)+1)
		for k, v := range *old {
			m[k] = v
		}
	}
	m[name] = r
	f.routes.Store(&m)
	return r
}

func (f *wasmFilter) tick(wv *worker, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
			if err := wv.vm.Tick(); err != nil {
				return
			}
			f.deliver(wv)
		}
	}
}

// deliver runs callout answers nobody waits for (shadows, answers that
// arrive after their stream ended) as Envoy's event loop would.
func (f *wasmFilter) deliver(wv *worker) {
	// Most streams make no callout: starting a dispatcher after each
	// would cost a goroutine and two VM locks per request for nothing.
	if wv.delivering.Load() || wv.vm.Idle() {
		return
	}
	if !wv.delivering.CompareAndSwap(false, true) {
		return
	}
	f.wg.Go(func() {
		defer wv.delivering.Store(false)
		_ = wv.vm.AwaitCallouts(f.ctx)
	})
}

// Close stops the filter's VMs.
func (f *wasmFilter) Close() error {
	f.cancel()
	f.wg.Wait()
	for _, wv := range f.workers {
		_ = wv.vm.Close()
	}
	return nil
}

// NewStream starts a stream on the next worker. The route name property
// is the route selected for the headers each filter callback sees.
func (f *wasmFilter) NewStream(context.Context) (router.FilterStream, error) {
	wv := f.workers[int(f.next.Add(1)-1)%len(f.workers)]
	ws, _ := f.streams.Get().(*wasmStream)
	if ws == nil {
		ws = &wasmStream{f: f}
		ws.props = ws.property
	}
	ws.w = wv
	s, err := wv.vm.OpenStream(wasmhost.StreamOptions{Properties: ws.props})
	if err != nil {
		ws.release()
		if wv.vm.FailOpen() {
			return passThrough{}, nil
		}
		return failedStream{}, nil
	}
	ws.s = s
	return ws, nil
}

// passThrough is a failed fail-open filter: the stream continues as if
// the filter were absent, as Envoy does.
type passThrough struct{}

func (passThrough) OnRequest(context.Context, *router.Message, string) (*router.LocalReply, error) {
	return nil, nil
}
func (passThrough) OnResponse(context.Context, *router.Message) (*router.LocalReply, error) {
	return nil, nil
}
func (passThrough) Done() {}

// failedStream is a failed fail-closed filter: Envoy's 503
// wasm_fail_stream answer.
type failedStream struct{}

func (failedStream) OnRequest(context.Context, *router.Message, string) (*router.LocalReply, error) {
	return localReply(wasmhost.FailClosedResponse()), nil
}
func (failedStream) OnResponse(context.Context, *router.Message) (*router.LocalReply, error) {
	return localReply(wasmhost.FailClosedResponse()), nil
}
func (failedStream) Done() {}

// wasmStream is one stream's instance of a wasm filter. Once done it goes
// back to its filter for a later stream, with its route cleared: the host
// asks a stream for properties only while it is open (a done stream's
// callouts find no stream), so nothing of one stream reaches the next.
type wasmStream struct {
	f     *wasmFilter
	w     *worker
	s     *wasmhost.Stream
	props func(string) ([]byte, bool) // property, bound once
	route atomic.Pointer[routeName]
}

// property answers the stream's proxy_get_property calls the host does
// not answer itself.
func (ws *wasmStream) property(path string) ([]byte, bool) {
	if path == "xds.route_name" || path == "route_name" {
		if r := ws.route.Load(); r != nil && r.name != "" {
			return r.bytes, true
		}
	}
	return nil, false
}

// release clears the stream for the next and gives it back.
func (ws *wasmStream) release() {
	ws.w, ws.s = nil, nil
	ws.route.Store(nil)
	ws.f.streams.Put(ws)
}

// failed is the answer after a trap: the host has failed the VM; fail open
// continues without the filter, fail closed answers as Envoy does.
func (ws *wasmStream) failed(err error) (*router.LocalReply, error) {
	if !errors.Is(err, wasmhost.ErrClosed) && ws.w.vm.Failed() == nil {
		return nil, err
	}
	if ws.w.vm.FailOpen() {
		return nil, nil
	}
	return localReply(wasmhost.FailClosedResponse()), nil
}

func (ws *wasmStream) OnRequest(ctx context.Context, req *router.Message, route string) (*router.LocalReply, error) {
	s := ws.s
	ws.route.Store(ws.f.routeName(route))
	// The stream keeps the router's lists and body (the router changes
	// neither in place), and hands back its own.
	if err := s.Request(req.Headers, req.Body, req.Trailers); err != nil {
		return ws.failed(err)
	}
	if err := s.AwaitResume(ctx, false); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return ws.failed(err)
	}
	headers, body, lr := s.RequestResult()
	if lr != nil {
		return localReply(lr), nil
	}
	req.Headers, req.Body = headers, body
	return nil, nil
}

func (ws *wasmStream) OnResponse(ctx context.Context, resp *router.Message) (*router.LocalReply, error) {
	s := ws.s
	before := s.LocalResponse()
	hasTrailers := len(resp.Trailers) > 0
	if err := s.Response(resp.Headers, resp.Body, resp.Trailers); err != nil {
		return ws.failed(err)
	}
	if err := s.AwaitResume(ctx, true); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return ws.failed(err)
	}
	headers, body, trailers, lr := s.ResponseResult()
	if lr != nil && lr != before {
		return localReply(lr), nil
	}
	resp.Headers, resp.Body = headers, body
	if hasTrailers {
		// The fanout filter writes a gRPC answer's status and report
		// into the trailers.
		resp.Trailers = trailers
	}
	return nil, nil
}

// Done ends the stream; nothing may use ws after it (it serves a later
// stream).
func (ws *wasmStream) Done() {
	if ws.s == nil {
		return
	}
	_ = ws.s.Done()
	ws.f.deliver(ws.w)
	ws.release()
}

func localReply(lr *wasmhost.LocalResponse) *router.LocalReply {
	return &router.LocalReply{Status: lr.Status, Body: string(lr.Body), Headers: lr.Headers, GRPCStatus: int(lr.GRPCStatus)}
}
