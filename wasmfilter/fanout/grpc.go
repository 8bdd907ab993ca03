package fanout

import (
	"strconv"

	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// startGRPC checks a gRPC ModelInfer request. For an ensemble the request
// goes on to the primary member (asking for its model) while the others
// are called out of band; for a sequence the steps before the last are
// called first and the request stays paused until the last step's input is
// known.
func (s *stream) startGRPC(body []byte) pw.Action {
	msg, err := oip.Unframe(body)
	if err != nil {
		s.reject(err.Error())
		return pw.ActionPause
	}
	// The body was read from the host for this stream alone and is never
	// written: the request's strings may point into it.
	req, err := oip.ParseGRPCRequestInPlace(msg)
	if err != nil {
		s.reject(err.Error())
		return pw.ActionPause
	}
	s.req, s.reqMsg = req, msg
	s.model, s.version = req.ModelName, req.ModelVersion
	s.startShadows()
	if s.route.Sequence {
		if len(s.route.Members) == 1 {
			return s.forwardLastStep(msg)
		}
		s.callGRPC(0, msg)
		return pw.ActionPause
	}
	s.primary = s.route.PrimaryIndex()
	pm := &s.route.Members[s.primary]
	fwd, err := oip.AppendRewriteGRPCRequest(s.scratch[:0], msg, pm.Model, pm.Version, true)
	if err != nil {
		s.reject(err.Error())
		return pw.ActionPause
	}
	s.scratch = fwd
	if err := pw.ReplaceHTTPRequestBody(fwd); err != nil {
		s.answered = true
		s.localError(500, grpcInternal, "fanout: rewrite request: "+err.Error())
		return pw.ActionPause
	}
	s.members[s.primary].called, s.members[s.primary].sent = true, s.p.now()
	for i := range s.route.Members {
		if i != s.primary {
			s.callGRPC(i, msg)
		}
	}
	return pw.ActionContinue
}

// callGRPC sends the request msg, asking for member i's model, to member i.
func (s *stream) callGRPC(i int, msg []byte) {
	m := &s.route.Members[i]
	ms := &s.members[i]
	ms.called, ms.sent = true, s.p.now()
	out, err := oip.AppendRewriteGRPCRequest(s.scratch[:0], msg, m.Model, m.Version, false)
	if err == nil {
		s.scratch = out
		_, err = pw.DispatchGRPCCall(m.Cluster, grpcService, grpcMethod, s.trace, out, s.timeout(), s.answerFunc(i))
	}
	if err != nil {
		s.memberDone(i, nil, "dispatch: "+err.Error())
		if s.route.Sequence {
			s.failSequence()
		}
		return
	}
	s.pending++
}

// answerFunc is the callback of member i's gRPC call, made once per
// context: a closure per call would be an allocation on every fan-out.
func (s *stream) answerFunc(i int) pw.GRPCCallCallback {
	for j := len(s.onAnswer); j <= i; j++ {
		s.onAnswer = append(s.onAnswer, func(status uint32, message string, resp []byte) {
			s.onGRPC(j, status, message, resp)
		})
	}
	return s.onAnswer[i]
}

// onGRPC handles member i's gRPC answer.
func (s *stream) onGRPC(i int, status uint32, message string, resp []byte) {
	s.pending--
	if s.answered {
		return
	}
	switch {
	case status == grpcDeadlineExceeded:
		s.memberDone(i, nil, "timeout after "+strconv.FormatUint(uint64(s.route.EffectiveTimeoutMs()), 10)+"ms")
	case status != 0:
		s.memberDone(i, nil, "grpc status "+strconv.FormatUint(uint64(status), 10)+": "+message)
	default:
		r, err := s.decodeAnswer(resp)
		if err != nil {
			s.memberDone(i, nil, "bad answer: "+err.Error())
		} else {
			s.memberDone(i, r, "")
		}
	}
	if s.route.Sequence {
		s.nextGRPCStep(i)
		return
	}
	if s.waiting && s.pending == 0 {
		s.finishGRPC()
		if err := pw.ResumeHTTPResponse(); err != nil {
			pw.LogError("fanout: resume response: " + err.Error())
		}
	}
}

// endGRPCResponse is reached when the primary's response is complete
// (trailers, or end of stream). It rewrites the response now, or pauses it
// until the out-of-band members have answered.
func (s *stream) endGRPCResponse() pw.Action {
	s.members[s.primary].ended = s.p.now()
	if s.pending > 0 {
		s.waiting = true
		return pw.ActionPause
	}
	s.finishGRPC()
	return pw.ActionContinue
}

// finishGRPC reads the primary's answer from the buffered response and
// replaces it with the combination, or turns the response into
// UNAVAILABLE naming the missing members.
func (s *stream) finishGRPC() {
	s.answered = true
	resp, why := s.readPrimary()
	s.memberDone(s.primary, resp, why)
	rep := newReport(s.route, s.members)
	answered := countAnswered(s.members)
	fail := func(msg string) {
		_ = pw.ReplaceHTTPResponseBody(nil)
		s.setGRPCStatus(grpcUnavailable, msg)
		s.addReport(rep)
		s.settle(nil)
	}
	if answered < s.route.EffectiveQuorum() {
		s.p.count(routeKey("quorum_failures_total", s.routeLabel), 1)
		fail(quorumMessage(s.route, s.members, rep))
		return
	}
	if s.members[s.primary].err != "" {
		s.p.count(routeKey("primary_failures_total", s.routeLabel), 1)
		fail("fanout: the primary member " + s.route.Members[s.primary].Label() +
			" failed and only its response can carry the result; missing: " + rep.missing)
		return
	}
	resp, answer, err := s.result(rep)
	var framed []byte
	if err == nil {
		framed, err = oip.AppendFramedGRPCResponse(s.scratch[:0], resp)
	}
	if err != nil {
		s.p.count(routeKey("combine_errors_total", s.routeLabel), 1)
		fail("fanout: " + err.Error())
		return
	}
	s.scratch = framed
	if err := pw.ReplaceHTTPResponseBody(framed); err != nil {
		fail("fanout: rewrite response: " + err.Error())
		return
	}
	s.addReport(rep)
	s.settle(answer)
}

// readPrimary decodes the primary's buffered response, or says why the
// primary is missing.
func (s *stream) readPrimary() (*oip.Response, string) {
	statusMap := pw.MapTypeHTTPResponseTrailers
	if s.trailersOnly {
		statusMap = pw.MapTypeHTTPResponseHeaders
	}
	st, err := pw.GetHeader(statusMap, "grpc-status")
	if err != nil {
		st = ""
	}
	if s.respStatus != "200" || st != "0" {
		msg, _ := pw.GetHeader(statusMap, "grpc-message")
		if st == "" {
			return nil, "HTTP " + s.respStatus + " without grpc-status"
		}
		if st == strconv.Itoa(grpcDeadlineExceeded) {
			return nil, "timeout: " + msg
		}
		return nil, "grpc status " + st + ": " + msg
	}
	body, err := pw.GetHTTPResponseBody(0, maxBody)
	if err != nil {
		return nil, "read answer: " + err.Error()
	}
	msg, err := oip.Unframe(body)
	if err != nil {
		return nil, "bad answer: " + err.Error()
	}
	resp, err := s.decodeAnswer(msg)
	if err != nil {
		return nil, "bad answer: " + err.Error()
	}
	return resp, ""
}

// decodeAnswer decodes a member's gRPC answer. An ensemble reads only
// its outputs (the combined answer carries the request's model, version
// and id, and the fan-out's own parameters); a sequence keeps the rest,
// since its last step's answer goes to the client.
func (s *stream) decodeAnswer(msg []byte) (*oip.Response, error) {
	if s.route.Sequence {
		return oip.DecodeGRPCResponse(msg)
	}
	// Answers are read from the host for this call alone and never
	// written: the outputs' names may point into them.
	return oip.DecodeGRPCOutputsInPlace(msg)
}

// setGRPCStatus sets the response's grpc-status and grpc-message, in the
// headers of a trailers-only response and in the trailers otherwise.
func (s *stream) setGRPCStatus(code int, msg string) {
	mt := pw.MapTypeHTTPResponseTrailers
	if s.trailersOnly {
		mt = pw.MapTypeHTTPResponseHeaders
	}
	_ = pw.ReplaceHeader(mt, "grpc-status", strconv.Itoa(code))
	_ = pw.ReplaceHeader(mt, "grpc-message", grpcMessage(msg))
}

// addReport puts the fan-out report in the trailers (the headers have
// gone out already), or in the headers of a trailers-only response.
func (s *stream) addReport(rep report) {
	mt := pw.MapTypeHTTPResponseTrailers
	if s.trailersOnly {
		mt = pw.MapTypeHTTPResponseHeaders
	}
	var buf [4][2]string
	for _, kv := range rep.appendHeaders(buf[:0]) {
		_ = pw.ReplaceHeader(mt, kv[0], kv[1])
	}
}

// nextGRPCStep moves a gRPC sequence on after step i answered: the next
// out-of-band step, or the last step through the route itself.
func (s *stream) nextGRPCStep(i int) {
	ms := &s.members[i]
	if ms.err != "" {
		s.failSequence()
		return
	}
	next := i + 1
	in := feed(&s.route.Members[next], ms.resp.Outputs)
	if next < len(s.route.Members)-1 {
		msg, err := oip.EncodeGRPCRequest(&oip.Request{ModelName: s.route.Members[next].Model, ID: s.req.ID, Inputs: in})
		if err != nil {
			ms.err = "outputs cannot feed the next step: " + err.Error()
			s.failSequence()
			return
		}
		s.callGRPC(next, msg)
		return
	}
	msg, err := oip.EncodeGRPCRequest(&oip.Request{ModelName: s.model, ID: s.req.ID, Inputs: in})
	if err != nil {
		ms.err = "outputs cannot feed the next step: " + err.Error()
		s.failSequence()
		return
	}
	s.forwardLastStep(msg)
	if err := pw.ResumeHTTPRequest(); err != nil {
		pw.LogError("fanout: resume request: " + err.Error())
	}
}

// forwardLastStep makes the paused request carry the last step's input,
// asking for the last member's model.
func (s *stream) forwardLastStep(msg []byte) pw.Action {
	last := len(s.route.Members) - 1
	m := &s.route.Members[last]
	framed, err := oip.RewriteFramedGRPCRequest(msg, m.Model, m.Version)
	if err == nil {
		err = pw.ReplaceHTTPRequestBody(framed)
	}
	if err != nil {
		s.answered = true
		s.localError(500, grpcInternal, "fanout: forward last step: "+err.Error())
		return pw.ActionPause
	}
	s.primary = last
	s.members[last].called, s.members[last].sent = true, s.p.now()
	return pw.ActionContinue
}

// failSequence answers a gRPC sequence whose step failed: nothing has gone
// upstream yet, so a local UNAVAILABLE reply is possible.
func (s *stream) failSequence() {
	if s.answered {
		return
	}
	s.answered = true
	s.p.count(routeKey("quorum_failures_total", s.routeLabel), 1)
	rep := newReport(s.route, s.members)
	s.localError(503, grpcUnavailable, "fanout: sequence stopped; missing: "+rep.missing)
	s.tellPrimary(nil)
}

// addSequenceTrailers reports a gRPC sequence's steps in the trailers
// once the last step (the route's own upstream) has answered.
func (s *stream) addSequenceTrailers() {
	if s.primary < 0 {
		return
	}
	why := ""
	if st, _ := pw.GetHTTPResponseTrailer("grpc-status"); st != "0" {
		msg, _ := pw.GetHTTPResponseTrailer("grpc-message")
		why = "grpc status " + st + ": " + msg
	}
	s.memberDone(s.primary, nil, why)
	s.addReport(newReport(s.route, s.members))
}
