// Command probe is a proxy-wasm filter that exercises every part of the
// binding, so wasmhost's own tests can check the host against a real
// module. Behaviour is chosen by the request path.
package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

func init() { pw.SetVMContext(&vmContext{}) }

func main() {}

type vmContext struct{ pw.DefaultVMContext }

func (*vmContext) OnVMStart(int) bool {
	cfg, err := pw.GetVMConfiguration()
	if err != nil {
		pw.LogError("vm config: " + err.Error())
		return false
	}
	return string(cfg) != "reject"
}

func (*vmContext) NewPluginContext(uint32) pw.PluginContext { return &plugin{} }

type plugin struct {
	pw.DefaultPluginContext
	requests  pw.Counter
	inflight  pw.Gauge
	sizes     pw.Histogram
	ticks     int
	callbacks int
}

func (p *plugin) OnPluginStart(int) bool {
	cfg, err := pw.GetPluginConfiguration()
	if err != nil {
		pw.LogError("plugin config: " + err.Error())
		return false
	}
	name, err := pw.GetProperty("plugin_name")
	if err != nil && !errors.Is(err, pw.ErrNotFound) {
		pw.LogError("property: " + err.Error())
	}
	if p.requests, err = pw.DefineCounter("probe_requests_total"); err != nil {
		return false
	}
	if p.inflight, err = pw.DefineGauge("probe_inflight"); err != nil {
		return false
	}
	if p.sizes, err = pw.DefineHistogram("probe_response_bytes"); err != nil {
		return false
	}
	if err := pw.SetTickPeriod(time.Second); err != nil {
		return false
	}
	pw.LogInfo("configured " + string(cfg) + " as " + string(name))
	return true
}

// OnTick adds one to a counter in shared data with a CAS retry loop, the
// way a filter shares state between worker threads.
func (p *plugin) OnTick() {
	p.ticks++
	for attempt := 0; attempt < 10; attempt++ {
		v, cas, err := pw.GetSharedData("ticks")
		if err != nil && !errors.Is(err, pw.ErrNotFound) {
			pw.LogError("get ticks: " + err.Error())
			return
		}
		n, _ := strconv.Atoi(string(v))
		err = pw.SetSharedData("ticks", []byte(strconv.Itoa(n+1)), cas)
		if err == nil {
			pw.LogInfo("tick " + strconv.Itoa(n+1))
			return
		}
		if !errors.Is(err, pw.ErrCasMismatch) {
			pw.LogError("set ticks: " + err.Error())
			return
		}
	}
}

// OnQueueReady drains the shared queue and logs each item.
func (p *plugin) OnQueueReady(id uint32) {
	for {
		v, err := pw.DequeueSharedQueue(id)
		if errors.Is(err, pw.ErrEmpty) {
			return
		}
		if err != nil {
			pw.LogError(err.Error())
			return
		}
		pw.LogInfo("queue got " + string(v))
	}
}

func (p *plugin) NewHTTPContext(id uint32) pw.HTTPContext { return &stream{plugin: p, id: id} }

type stream struct {
	pw.DefaultHTTPContext
	plugin    *plugin
	id        uint32
	path      string
	bodyCalls int
	lateGet   string // what reading request headers after Continue gave
	early     string // what adding request trailers in headers gave
}

func (s *stream) OnHTTPRequestHeaders(_ int, endOfStream bool) pw.Action {
	_ = s.plugin.requests.Increment(1)
	_ = s.plugin.inflight.Add(1)
	s.path, _ = pw.GetHTTPRequestHeader(":path")
	switch {
	case s.path == "/panic":
		panic("probe asked to panic")
	case s.path == "/local":
		err := pw.SendHTTPResponse(418, [][2]string{{"x-probe", "local"}}, []byte("short and stout"), pw.NoGRPCStatus)
		if err != nil {
			pw.LogError(err.Error())
		}
		return pw.ActionPause
	case strings.HasPrefix(s.path, "/callout"):
		timeout := 2 * time.Second
		if strings.HasSuffix(s.path, "slow") {
			timeout = 50 * time.Millisecond
		}
		_, err := pw.DispatchHTTPCall("backend", [][2]string{{":method", "GET"}, {":path", "/side" + s.path},
			{":authority", "backend"}}, nil, nil, timeout, s.onCallout)
		if err != nil {
			pw.LogError(err.Error())
			return pw.ActionContinue
		}
		return pw.ActionPause
	case strings.HasPrefix(s.path, "/grpc/"):
		service := strings.TrimPrefix(s.path, "/grpc/")
		_, err := pw.DispatchGRPCCall("grpc", "grpc.health.v1.Health", "Check", [][2]string{{"x-probe", "1"}},
			healthRequest(service), time.Second, s.onGRPC)
		if err != nil {
			pw.LogError(err.Error())
			return pw.ActionContinue
		}
		return pw.ActionPause
	case s.path == "/local-continue":
		// Answers locally but returns Continue: cpp-host stops anyway.
		_ = pw.SendHTTPResponse(403, nil, []byte("denied"), pw.NoGRPCStatus)
		return pw.ActionContinue
	case s.path == "/wait-body":
		// Waits for the whole body, then answers from it: needs the body
		// callbacks while the headers are paused.
		return pw.ActionPause
	case s.path == "/wait-callout-then-body":
		_, err := pw.DispatchHTTPCall("backend", [][2]string{{":method", "GET"}, {":path", "/side/first"},
			{":authority", "backend"}}, nil, nil, 2*time.Second, s.onCallout)
		if err != nil {
			pw.LogError(err.Error())
			return pw.ActionContinue
		}
		return pw.ActionPause
	case s.path == "/count-zero":
		err := s.plugin.requests.Increment(0)
		_ = pw.ReplaceHTTPRequestHeader("x-increment-zero", strconv.FormatBool(errors.Is(err, pw.ErrBadArgument)))
		return pw.ActionContinue
	case s.path == "/late-headers":
		// Envoy has no request trailers map yet.
		err := pw.AddHeader(pw.MapTypeHTTPRequestTrailers, "x-early", "1")
		s.early = fmt.Sprint(errors.Is(err, pw.ErrBadArgument))
		// Nor a body before its callback, nor the plugin configuration
		// outside proxy_on_configure.
		body, err := pw.GetHTTPRequestBody(0, 1024)
		s.early += fmt.Sprint(" ", len(body) == 0 && err == nil)
		_, err = pw.GetPluginConfiguration()
		s.early += fmt.Sprint(" ", errors.Is(err, pw.ErrNotFound))
		return pw.ActionContinue
	case s.path == "/wasi":
		s.wasi()
		return pw.ActionContinue
	case s.path == "/grpc-unknown-cluster":
		_, err := pw.DispatchGRPCCall("nowhere", "grpc.health.v1.Health", "Check", nil, nil, time.Second, s.onGRPC)
		_ = pw.ReplaceHTTPRequestHeader("x-dispatch-error", strconv.FormatBool(errors.Is(err, pw.ErrParseFailure)))
		return pw.ActionContinue
	case s.path == "/queue-register":
		id, err := pw.RegisterSharedQueue("jobs")
		_ = pw.ReplaceHTTPRequestHeader("x-queue", fmt.Sprint(id, err))
		return pw.ActionContinue
	case strings.HasPrefix(s.path, "/queue-put/"):
		_, err := pw.ResolveSharedQueue("", "nope")
		_ = pw.ReplaceHTTPRequestHeader("x-resolve-unknown-not-found", strconv.FormatBool(errors.Is(err, pw.ErrNotFound)))
		id, err := pw.ResolveSharedQueue("", "jobs")
		if err == nil {
			err = pw.EnqueueSharedQueue(id, []byte(strings.TrimPrefix(s.path, "/queue-put/")))
		}
		_ = pw.ReplaceHTTPRequestHeader("x-queue", fmt.Sprint(id, err))
		return pw.ActionContinue
	case s.path == "/unknown-cluster":
		_, err := pw.DispatchHTTPCall("nowhere", [][2]string{{":method", "GET"}, {":path", "/"},
			{":authority", "x"}}, nil, nil, time.Second, s.onCallout)
		_ = pw.ReplaceHTTPRequestHeader("x-dispatch-error", strconv.FormatBool(errors.Is(err, pw.ErrBadArgument)))
		return pw.ActionContinue
	}
	_ = pw.ReplaceHTTPRequestHeader("x-probe", "seen")
	if route, err := pw.GetProperty("route_name"); err == nil {
		_ = pw.ReplaceHTTPRequestHeader("x-route-name", string(route))
	}
	return pw.ActionContinue
}

// wasi tries what a Go program does through WASI and reports each result
// in a request header.
func (s *stream) wasi() {
	_, err := os.ReadFile("/etc/hostname")
	_ = pw.ReplaceHTTPRequestHeader("x-wasi-open-failed", strconv.FormatBool(err != nil))
	_, err = os.Stdin.Read(make([]byte, 8))
	_ = pw.ReplaceHTTPRequestHeader("x-wasi-stdin-failed", strconv.FormatBool(err != nil))
	b := make([]byte, 16)
	_, err = rand.Read(b)
	_ = pw.ReplaceHTTPRequestHeader("x-wasi-random", strconv.FormatBool(err == nil && string(b) != string(make([]byte, 16))))
	start := time.Now()
	time.Sleep(time.Millisecond)
	_ = pw.ReplaceHTTPRequestHeader("x-wasi-slept", strconv.FormatBool(time.Since(start) >= time.Millisecond))
	fmt.Fprintln(os.Stdout, "probe wrote to stdout")
	fmt.Fprintln(os.Stderr, "probe wrote to stderr")
}

func healthRequest(service string) []byte {
	if service == "" {
		return nil
	}
	// HealthCheckRequest{service: ...}: field 1, wire type 2.
	return append([]byte{0x0a, byte(len(service))}, service...)
}

func (s *stream) onCallout(numHeaders, bodySize, _ int) {
	s.plugin.callbacks++
	if numHeaders == 0 {
		_ = pw.ReplaceHTTPRequestHeader("x-callout", "failed")
	} else {
		status, _ := pw.GetHeader(pw.MapTypeHTTPCallResponseHeaders, ":status")
		body, _ := pw.GetHTTPCallResponseBody(0, bodySize)
		_ = pw.ReplaceHTTPRequestHeader("x-callout", status+" "+string(body))
	}
	if err := pw.ResumeHTTPRequest(); err != nil {
		pw.LogError(err.Error())
	}
}

func (s *stream) onGRPC(status uint32, message string, response []byte) {
	_ = pw.ReplaceHTTPRequestHeader("x-grpc", strconv.Itoa(int(status))+" "+message+" "+strconv.Quote(string(response)))
	_ = pw.ResumeHTTPRequest()
}

func (s *stream) OnHTTPRequestBody(bodySize int, endOfStream bool) pw.Action {
	switch s.path {
	case "/late-headers":
		// Envoy forgets the request headers once their callback continued.
		_, err := pw.GetHTTPRequestHeader(":path")
		s.lateGet = fmt.Sprint(errors.Is(err, pw.ErrBadArgument))
		return pw.ActionContinue
	case "/wait-body", "/wait-callout-then-body":
		s.bodyCalls++
		if !endOfStream {
			return pw.ActionPause
		}
		body, _ := pw.GetHTTPRequestBody(0, bodySize)
		err := pw.SendHTTPResponse(200, [][2]string{{"x-body-calls", strconv.Itoa(s.bodyCalls)}}, body, pw.NoGRPCStatus)
		if err != nil {
			pw.LogError(err.Error())
		}
		return pw.ActionPause
	case "/upper":
	default:
		return pw.ActionContinue
	}
	if !endOfStream {
		return pw.ActionPause
	}
	body, err := pw.GetHTTPRequestBody(0, bodySize)
	if err != nil {
		pw.LogError(err.Error())
		return pw.ActionContinue
	}
	if err := pw.ReplaceHTTPRequestBody([]byte(strings.ToUpper(string(body)))); err != nil {
		pw.LogError(err.Error())
	}
	return pw.ActionContinue
}

func (s *stream) OnHTTPResponseHeaders(int, bool) pw.Action {
	status, _ := pw.GetHTTPResponseHeader(":status")
	_ = pw.ReplaceHTTPResponseHeader("x-probe-response", status)
	if s.lateGet != "" {
		_ = pw.ReplaceHTTPResponseHeader("x-late-get-bad-argument", s.lateGet)
		_ = pw.ReplaceHTTPResponseHeader("x-early-trailer-bad-argument", s.early)
	}
	return pw.ActionContinue
}

func (s *stream) OnHTTPResponseBody(bodySize int, endOfStream bool) pw.Action {
	if endOfStream {
		_ = s.plugin.sizes.Record(uint64(bodySize))
	}
	return pw.ActionContinue
}

func (s *stream) OnHTTPStreamDone() {
	_ = s.plugin.inflight.Add(-1)
	pw.LogDebug("done " + strconv.Itoa(int(s.id)) + " " + s.path)
}
