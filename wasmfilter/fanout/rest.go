package fanout

import (
	"time"

	"github.com/maestro-ml/maestro/wasmfilter/fanout/combine"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// startREST checks a REST request and calls the members (all of them, or
// the first step of a sequence). The request stays paused: the filter
// answers locally once the members have.
func (s *stream) startREST(body []byte) pw.Action {
	req, err := oip.CheckJSONRequest(body)
	if err != nil {
		s.reject(err.Error())
		return pw.ActionPause
	}
	s.req, s.reqMsg = req, body
	s.startShadows()
	if s.route.Sequence {
		s.callREST(0, body)
	} else {
		for i := range s.route.Members {
			s.callREST(i, body)
		}
	}
	if s.pending == 0 && !s.answered {
		s.finishREST()
	}
	return pw.ActionPause
}

// callREST sends body to member i.
func (s *stream) callREST(i int, body []byte) {
	m := &s.route.Members[i]
	ms := &s.members[i]
	ms.called, ms.sent = true, s.p.now()
	headers := s.calloutHeaders(oip.InferPathFor(m.Model, m.Version), m)
	_, err := pw.DispatchHTTPCall(m.Cluster, headers, body, nil, s.timeout(), func(numHeaders, bodySize, _ int) {
		s.onREST(i, numHeaders, bodySize)
	})
	if err != nil {
		s.memberDone(i, nil, "dispatch: "+err.Error())
		if s.route.Sequence {
			s.finishREST()
		}
		return
	}
	s.pending++
}

// onREST handles member i's REST answer.
func (s *stream) onREST(i, numHeaders, bodySize int) {
	s.pending--
	if s.answered {
		return
	}
	ms := &s.members[i]
	switch {
	case numHeaders == 0:
		s.memberDone(i, nil, failureReason(time.Since(ms.sent), s.route.EffectiveTimeoutMs()))
	default:
		status, _ := pw.GetHeader(pw.MapTypeHTTPCallResponseHeaders, ":status")
		body, err := pw.GetHTTPCallResponseBody(0, bodySize)
		switch {
		case err != nil:
			s.memberDone(i, nil, "read answer: "+err.Error())
		case status != "200":
			s.memberDone(i, nil, httpErrorReason(status, body))
		default:
			resp, derr := oip.DecodeJSONResponse(body)
			if derr != nil {
				s.memberDone(i, nil, "bad answer: "+derr.Error())
			} else {
				s.memberDone(i, resp, "")
			}
		}
	}
	if s.route.Sequence && ms.err == "" && i+1 < len(s.route.Members) {
		next, err := oip.EncodeJSONRequest(s.req.ID, feed(&s.route.Members[i+1], ms.resp.Outputs))
		if err != nil {
			ms.err = "outputs cannot feed the next step: " + err.Error()
			s.finishREST()
			return
		}
		s.callREST(i+1, next)
		return
	}
	if s.pending == 0 || (s.route.Sequence && ms.err != "") {
		s.finishREST()
	}
}

// finishREST answers the client: the combination (or the sequence's last
// answer), or 503 naming the missing members.
func (s *stream) finishREST() {
	if s.answered {
		return
	}
	s.answered = true
	rep := newReport(s.route, s.members)
	headers := append([][2]string{{"content-type", "application/json"}}, rep.headers()...)
	if countAnswered(s.members) < s.route.EffectiveQuorum() {
		s.p.count(routeKey("quorum_failures_total", s.routeLabel), 1)
		s.send(503, headers, oip.EncodeJSONError(quorumMessage(s.route, s.members, rep)))
		s.settle(nil)
		return
	}
	resp, answer, err := s.result(rep)
	if err != nil {
		s.p.count(routeKey("combine_errors_total", s.routeLabel), 1)
		s.send(502, headers, oip.EncodeJSONError("fanout: "+err.Error()))
		s.settle(nil)
		return
	}
	body, err := oip.EncodeJSONResponse(resp)
	if err != nil {
		s.p.count(routeKey("combine_errors_total", s.routeLabel), 1)
		s.send(502, headers, oip.EncodeJSONError("fanout: encode answer: "+err.Error()))
		s.settle(nil)
		return
	}
	s.send(200, headers, body)
	s.settle(answer)
}

func (s *stream) send(status uint32, headers [][2]string, body []byte) {
	if err := pw.SendHTTPResponse(status, headers, body, pw.NoGRPCStatus); err != nil {
		pw.LogError("fanout: send local response: " + err.Error())
	}
}

// result builds the response for the answered members: the combination of
// their outputs, or for a sequence the last member's answer. It returns
// the answer shadows are compared with.
func (s *stream) result(rep report) (*oip.Response, *combine.Answer, error) {
	// One allocation holds the response, its output and the answer.
	c := &combined{resp: oip.Response{ModelName: s.model, ModelVersion: s.version, ID: s.req.ID}}
	c.resp.Parameters = c.params.set(rep)
	out := &c.resp
	if s.route.Sequence {
		last := &s.members[len(s.members)-1]
		out.Outputs = last.resp.Outputs
		out.Parameters = append(append([]oip.Param(nil), last.resp.Parameters...), out.Parameters...)
		c.answer = last.answer
		return out, &c.answer, nil
	}
	var room [8]combine.Answer
	answers := room[:0]
	first := -1
	for i := range s.members {
		if answeredOK(&s.members[i]) {
			if first < 0 {
				first = i
			}
			answers = append(answers, s.members[i].answer)
		}
	}
	res, err := Combine(s.route, answers)
	if err != nil {
		return nil, nil, err
	}
	// Every strategy makes its Values afresh: the tensor may round them in
	// place.
	c.output[0] = combinedTensor(s.members[first].output, res, c.shape[:0], true)
	out.Outputs = c.output[:]
	t := &c.output[0]
	rows, width := t.RowsWidth()
	c.answer = combine.Answer{Label: "ensemble", Rows: rows, Width: width, Scores: t.Values}
	return out, &c.answer, nil
}

// combined is what result builds, in one piece.
type combined struct {
	resp   oip.Response
	params reportParams
	output [1]oip.Tensor
	shape  [4]int64
	answer combine.Answer
}
