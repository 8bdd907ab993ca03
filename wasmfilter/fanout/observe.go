package fanout

import (
	"math"
	"strconv"
	"time"

	"github.com/maestro-ml/maestro/wasmfilter/fanout/combine"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// Observations (filterconfig.Observe): once the client's answer is
// settled, the filter posts what every member and the ensemble answered to
// the control plane, whose adaptive tuner scores the members against the
// labels the application sends for the same request id, or against the
// ensemble. The callout belongs to the plugin (Envoy cancels a stream's
// callouts when the stream ends, and a REST answer ends it at once) and
// nothing waits for it: its answer only counts a failure.

// observeSamplingKey keeps a route's observation sampling apart from its
// shadows' (keyed route NUL label).
const observeSamplingKey = "\x01observe"

// observe posts the observation of this request if the route asks for one
// and the request is sampled; ens is the combined answer the client got,
// nil when it got none (no quorum, a failed combination).
func (s *stream) observe(ens *combine.Answer) {
	o := s.route.Observe
	if o == nil || s.observed {
		return
	}
	s.observed = true
	p, route := s.p, s.routeLabel
	failed := routeKey("observe_failures_total", route)
	p.count(failed, 0) // exported at 0 from the first observation
	if !p.every(route+observeSamplingKey, o.Percent) {
		return
	}
	body := observation(s.route, s.requestID(), s.members, ens)
	authority := o.Authority
	if authority == "" {
		authority = o.Cluster
	}
	headers := [][2]string{{":method", "POST"}, {":path", o.EffectivePath()}, {":authority", authority},
		{"content-type", "application/json"}}
	p.count(routeKey("observations_total", route), 1)
	timeout := time.Duration(o.EffectiveTimeoutMs()) * time.Millisecond
	_, err := pw.DispatchHTTPCallForPlugin(o.Cluster, headers, body, nil, timeout, func(numHeaders, _, _ int) {
		status := ""
		if numHeaders > 0 {
			status, _ = pw.GetHeader(pw.MapTypeHTTPCallResponseHeaders, ":status")
		}
		if status != "204" && status != "200" {
			p.count(failed, 1)
			pw.LogDebug("fanout: observation of route " + tagValue(route) + " refused: status " + status)
		}
	})
	if err != nil {
		p.count(failed, 1)
		pw.LogDebug("fanout: observation of route " + tagValue(route) + ": " + err.Error())
	}
}

// requestID is the id an application labels this request by: the OIP
// request's own id when the client set one, else the x-request-id header
// (which Envoy generates when the client sends none); empty without
// either.
func (s *stream) requestID() string {
	if s.req != nil && s.req.ID != "" {
		return s.req.ID
	}
	for _, kv := range s.trace {
		if kv[0] == "x-request-id" {
			return kv[1]
		}
	}
	return ""
}

// observation is the body of POST /v1/observations (the control plane's
// closedloop.Observation): each member's outcome and, when it answered,
// the class of its first row; and the ensemble's class, or null.
func observation(r *filterconfig.FanoutRoute, id string, ms []memberState, ens *combine.Answer) []byte {
	o := r.Observe
	b := make([]byte, 0, 128+64*len(ms))
	b = append(b, `{"route":`...)
	b = oip.AppendJSONString(b, o.Route)
	b = append(b, `,"requestId":`...)
	b = oip.AppendJSONString(b, id)
	b = append(b, `,"ensemble":`...)
	if v, ok := ensembleClass(r, ens); ok {
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"answers":[`...)
	for i := range ms {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"member":`...)
		b = oip.AppendJSONString(b, o.Members[i])
		m := &ms[i]
		v, answered := firstClass(m.answer, r.EffectiveThreshold())
		switch {
		case m.done && m.err == "" && answered:
			b = append(b, `,"outcome":"answered","value":`...)
			b = strconv.AppendFloat(b, v, 'g', -1, 64)
		case m.called && (!m.done || isTimeout(m.err)):
			// Still out when the answer was settled: it outlasted the
			// route's timeout.
			b = append(b, `,"outcome":"timeout"`...)
		default:
			b = append(b, `,"outcome":"failed"`...)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// firstClass is the class the combination takes from an answer's first
// row (combine.Class), false for an answer without scores.
func firstClass(a combine.Answer, threshold float64) (float64, bool) {
	if a.Width <= 0 || len(a.Scores) < a.Width {
		return 0, false
	}
	return float64(combine.Class(a.Scores[:a.Width], threshold)), true
}

// ensembleClass is the class of the combined answer's first row: a vote's
// value is a class already.
func ensembleClass(r *filterconfig.FanoutRoute, ens *combine.Answer) (float64, bool) {
	if ens == nil {
		return 0, false
	}
	switch r.EffectiveStrategy() {
	case filterconfig.StrategyMajorityVote, filterconfig.StrategyWeightedVote:
		if len(ens.Scores) == 0 || math.IsNaN(ens.Scores[0]) {
			return 0, false
		}
		return ens.Scores[0], true
	}
	return firstClass(*ens, r.EffectiveThreshold())
}

func isTimeout(err string) bool { return len(err) >= 7 && err[:7] == "timeout" }

// settle hands the answer the client got (nil: none) to the shadows'
// comparisons and to the observation.
func (s *stream) settle(a *combine.Answer) {
	s.tellPrimary(a)
	s.observe(a)
}
