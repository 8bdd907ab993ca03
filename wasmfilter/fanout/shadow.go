package fanout

import (
	"math"
	"strconv"

	"github.com/maestro-ml/maestro/wasmfilter/fanout/combine"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// shadowCmp pairs a shadow's answer with the primary's (the answer the
// client got) until both are in. It lives in the plugin, because the
// shadow may answer after the stream is gone.
type shadowCmp struct {
	route     *filterconfig.FanoutRoute
	routeName string
	label     string
	// each side is in once told; nil when that side has no usable answer.
	primary, shadow     *combine.Answer
	primaryIn, shadowIn bool
}

// startShadows sends a copy of the request to every shadow sampled for it.
// The copies are the plugin's callouts: they never hold the stream.
func (s *stream) startShadows() {
	for i := range s.route.Shadows {
		sh := &s.route.Shadows[i]
		if !s.p.sample(s.routeLabel, sh) {
			continue
		}
		id := s.p.newShadow(s.route, sh)
		s.shadowIDs = append(s.shadowIDs, id)
		s.p.count(shadowKey("sent_total", s.routeLabel, sh.Label()), 1)
		if err := s.sendShadow(sh, id); err != nil {
			pw.LogWarn("fanout: shadow " + sh.Label() + ": " + err.Error())
			s.p.tellShadow(id, nil)
		}
	}
}

func (s *stream) sendShadow(sh *filterconfig.Shadow, id uint64) error {
	model, version := s.model, s.version
	if sh.Model != "" {
		model, version = sh.Model, sh.Version
	}
	p := s.p
	if s.proto == protoGRPC {
		msg, err := oip.RewriteGRPCRequest(s.reqMsg, model, version)
		if err != nil {
			return err
		}
		_, err = pw.DispatchGRPCCallForPlugin(sh.Cluster, grpcService, grpcMethod, s.trace, msg, s.timeout(),
			func(status uint32, _ string, resp []byte) {
				if status != 0 {
					p.tellShadow(id, nil)
					return
				}
				r, err := oip.DecodeGRPCResponse(resp)
				if err != nil {
					p.tellShadow(id, nil)
					return
				}
				p.tellShadow(id, r)
			})
		return err
	}
	m := &filterconfig.FanoutMember{Cluster: sh.Cluster, Authority: sh.Authority}
	headers := s.calloutHeaders(oip.InferPathFor(model, version), m)
	_, err := pw.DispatchHTTPCallForPlugin(sh.Cluster, headers, s.reqMsg, nil, s.timeout(), func(numHeaders, bodySize, _ int) {
		if numHeaders == 0 {
			p.tellShadow(id, nil)
			return
		}
		status, _ := pw.GetHeader(pw.MapTypeHTTPCallResponseHeaders, ":status")
		body, err := pw.GetHTTPCallResponseBody(0, bodySize)
		if err != nil || status != "200" {
			p.tellShadow(id, nil)
			return
		}
		r, err := oip.DecodeJSONResponse(body)
		if err != nil {
			p.tellShadow(id, nil)
			return
		}
		p.tellShadow(id, r)
	})
	return err
}

// tellPrimaryFromBody decodes the pass-through response copied in
// respBody (ok: the upstream reported success) for the shadows.
func (s *stream) tellPrimaryFromBody(ok bool) {
	if len(s.shadowIDs) == 0 || s.primaryTold {
		return
	}
	if !ok {
		s.tellPrimary(nil)
		return
	}
	var resp *oip.Response
	var err error
	if s.proto == protoGRPC {
		var msg []byte
		if msg, err = oip.Unframe(s.respBody); err == nil {
			resp, err = oip.DecodeGRPCResponse(msg)
		}
	} else {
		resp, err = oip.DecodeJSONResponse(s.respBody)
	}
	if err != nil {
		s.tellPrimary(nil)
		return
	}
	a, ok2 := answerFor(s.route, resp)
	if !ok2 {
		s.tellPrimary(nil)
		return
	}
	s.tellPrimary(&a)
}

// tellPrimary hands the answer the client got (nil: none usable) to the
// stream's shadow comparisons; only the first call counts.
func (s *stream) tellPrimary(a *combine.Answer) {
	if s.primaryTold {
		return
	}
	s.primaryTold = true
	for _, id := range s.shadowIDs {
		c, ok := s.p.shadows[id]
		if !ok {
			continue
		}
		c.primary, c.primaryIn = a, true
		s.p.resolveShadow(id)
	}
}

// answerFor takes the route's compared output from a response.
func answerFor(r *filterconfig.FanoutRoute, resp *oip.Response) (combine.Answer, bool) {
	t := oip.Find(resp.Outputs, r.Output)
	if t == nil || t.Datatype == "BYTES" {
		return combine.Answer{}, false
	}
	rows, width := t.RowsWidth()
	return combine.Answer{Rows: rows, Width: width, Scores: t.Values}, true
}

func (p *plugin) newShadow(r *filterconfig.FanoutRoute, sh *filterconfig.Shadow) uint64 {
	p.nextShadow++
	p.shadows[p.nextShadow] = &shadowCmp{route: r, routeName: r.Route, label: sh.Label()}
	return p.nextShadow
}

// tellShadow records the shadow's answer (nil: failed).
func (p *plugin) tellShadow(id uint64, resp *oip.Response) {
	c, ok := p.shadows[id]
	if !ok {
		return
	}
	c.shadowIn = true
	if resp != nil {
		if a, ok := answerFor(c.route, resp); ok {
			c.shadow = &a
		}
	}
	if c.shadow == nil {
		p.count(shadowKey("failures_total", c.routeName, c.label), 1)
	}
	p.resolveShadow(id)
}

// resolveShadow compares once both sides are in, and forgets the pair.
func (p *plugin) resolveShadow(id uint64) {
	c := p.shadows[id]
	if c == nil || !c.primaryIn || !c.shadowIn {
		return
	}
	delete(p.shadows, id)
	metric := func(name string) metricKey { return shadowKey(name, c.routeName, c.label) }
	if c.primary == nil || c.shadow == nil {
		p.count(metric("skipped_total"), 1)
		return
	}
	cmp, err := combine.Compare(*c.primary, *c.shadow, c.route.EffectiveThreshold())
	if err != nil {
		p.count(metric("mismatched_total"), 1)
		pw.LogWarn("fanout: shadow " + c.label + ": " + err.Error())
		return
	}
	p.count(metric("compared_total"), 1)
	p.count(metric("rows_total"), uint64(cmp.Rows))
	p.count(metric("class_agree_rows_total"), uint64(cmp.Agree))
	p.count(metric("class_disagree_rows_total"), uint64(cmp.Rows-cmp.Agree))
	p.count(metric("abs_diff_micros_total"), Micros(cmp.SumAbsDiff))
	p.record(metric("max_abs_diff_micros"), Micros(cmp.MaxAbsDiff))
	pw.LogDebug("fanout: shadow " + c.label + " agreed on " + strconv.Itoa(cmp.Agree) + " of " + strconv.Itoa(cmp.Rows) + " rows")
}

// Micros is how score differences are counted: in millionths, rounded.
func Micros(v float64) uint64 {
	if v <= 0 || math.IsNaN(v) {
		return 0
	}
	if v >= math.MaxUint64/1e6 {
		return math.MaxUint64
	}
	return uint64(math.Round(v * 1e6))
}
