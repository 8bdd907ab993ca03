// Command probe is a proxy-wasm filter that exercises every part of the
// binding, so wasmhost's own tests can check the host against a real
// module. Behaviour is chosen by the request path.
package main

import (
	"errors"
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

func (p *plugin) NewHTTPContext(id uint32) pw.HTTPContext { return &stream{plugin: p, id: id} }

type stream struct {
	pw.DefaultHTTPContext
	plugin *plugin
	id     uint32
	path   string
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
	case s.path == "/unknown-cluster":
		_, err := pw.DispatchHTTPCall("nowhere", [][2]string{{":method", "GET"}, {":path", "/"},
			{":authority", "x"}}, nil, nil, time.Second, s.onCallout)
		_ = pw.ReplaceHTTPRequestHeader("x-dispatch-error", strconv.FormatBool(errors.Is(err, pw.ErrBadArgument)))
		return pw.ActionContinue
	}
	_ = pw.ReplaceHTTPRequestHeader("x-probe", "seen")
	return pw.ActionContinue
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
	if s.path != "/upper" {
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
