package wasmtest

import (
	"fmt"
	"testing"
	"time"

	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// Exchange is one HTTP exchange delivered to a filter callback by callback,
// as the gateway (and Envoy) deliver a unary request that the filter lets
// through: request headers, body, response headers, body, trailers, and
// the stream's end. Empty parts are not delivered.
type Exchange struct {
	RequestHeaders   [][2]string
	RequestBody      []byte
	ResponseHeaders  [][2]string
	ResponseBody     []byte
	ResponseTrailers [][2]string
}

// Phase is one step of an Exchange, timed by Run.
type Phase int

// The phases in the order Run delivers them.
const (
	PhaseCreate Phase = iota // proxy_on_context_create
	PhaseRequestHeaders
	PhaseRequestBody
	PhaseResponseHeaders
	PhaseResponseBody
	PhaseResponseTrailers
	PhaseDone // proxy_on_log, proxy_on_done, proxy_on_delete
	numPhases
)

var phaseNames = [numPhases]string{"create", "req-headers", "req-body", "resp-headers", "resp-body", "resp-trailers", "done"}

// PhaseTimes accumulates the wall time of each phase over many exchanges.
type PhaseTimes [numPhases]time.Duration

// Run delivers the exchange to a new stream of vm, adding each phase's
// wall time to t (nil: untimed). The filter must let the exchange through:
// a pause or a local response is an error.
func (e *Exchange) Run(vm *VM, t *PhaseTimes) error {
	var scratch PhaseTimes
	if t == nil {
		t = &scratch
	}
	t0 := time.Now()
	s, err := vm.NewStream()
	if err != nil {
		return err
	}
	t1 := time.Now()
	t[PhaseCreate] += t1.Sub(t0)
	reqEnd, respEnd := len(e.RequestBody) == 0, len(e.ResponseBody) == 0 && len(e.ResponseTrailers) == 0
	steps := []struct {
		phase Phase
		skip  bool
		run   func() (pw.Action, error)
	}{
		{PhaseRequestHeaders, false, func() (pw.Action, error) { return s.RequestHeaders(e.RequestHeaders, reqEnd) }},
		{PhaseRequestBody, reqEnd, func() (pw.Action, error) { return s.RequestBody(e.RequestBody, true) }},
		{PhaseResponseHeaders, false, func() (pw.Action, error) { return s.ResponseHeaders(e.ResponseHeaders, respEnd) }},
		{PhaseResponseBody, len(e.ResponseBody) == 0, func() (pw.Action, error) {
			return s.ResponseBody(e.ResponseBody, len(e.ResponseTrailers) == 0)
		}},
		{PhaseResponseTrailers, len(e.ResponseTrailers) == 0, func() (pw.Action, error) { return s.ResponseTrailers(e.ResponseTrailers) }},
	}
	for _, st := range steps {
		if st.skip {
			continue
		}
		a, err := st.run()
		t2 := time.Now()
		t[st.phase] += t2.Sub(t1)
		t1 = t2
		if err != nil {
			return fmt.Errorf("%s: %w", phaseNames[st.phase], err)
		}
		if a != pw.ActionContinue || s.LocalResponse() != nil {
			return fmt.Errorf("%s: the filter stopped the exchange (action %d, local response %v)", phaseNames[st.phase], a, s.LocalResponse())
		}
		t1 = time.Now()
	}
	err = s.Done()
	t[PhaseDone] += time.Since(t1)
	return err
}

// Report reports each phase's mean wall time over n exchanges as
// "<phase>-ns/op", skipping phases that never ran.
func (t *PhaseTimes) Report(b *testing.B, n int) {
	for p, d := range t {
		if d > 0 {
			b.ReportMetric(float64(d.Nanoseconds())/float64(n), phaseNames[p]+"-ns/op")
		}
	}
}
