package fanout

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/maestro-ml/maestro/wasmfilter/fanout/combine"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

// memberState is what became of one member's call.
type memberState struct {
	called  bool
	done    bool
	err     string // why the member is missing; empty when it answered
	sent    time.Time
	ended   time.Time // when the answer came, if not at memberDone
	latency time.Duration
	resp    *oip.Response
	answer  combine.Answer
	output  *oip.Tensor // the output the answer was taken from
}

// AnswerOf takes the output tensor named output (empty: the first) from a
// response as a combine.Answer for member index i of route r. Tests use it
// to compute what the filter must answer from each member's own response.
//
// # Errors
//
// The output is missing or holds BYTES.
func AnswerOf(r *filterconfig.FanoutRoute, i int, resp *oip.Response) (combine.Answer, *oip.Tensor, error) {
	m := &r.Members[i]
	t := oip.Find(resp.Outputs, r.Output)
	if t == nil {
		if r.Output == "" {
			return combine.Answer{}, nil, errors.New("answer has no outputs")
		}
		return combine.Answer{}, nil, fmt.Errorf("answer has no output %q", r.Output)
	}
	if t.Datatype == "BYTES" {
		return combine.Answer{}, nil, fmt.Errorf("output %q holds BYTES, which cannot be combined", t.Name)
	}
	rows, width := t.RowsWidth()
	return combine.Answer{Member: i, Label: m.Label(), Weight: m.Weight, Rows: rows, Width: width, Scores: t.Values}, t, nil
}

// CombinedTensor is the output tensor the filter answers for result res,
// shaped like the members' output like: votes give INT64 classes [rows, 1];
// scores keep like's shape, in FP64 when like is FP64 and FP32 otherwise.
func CombinedTensor(like *oip.Tensor, res combine.Result) oip.Tensor {
	return combinedTensor(like, res, nil, false)
}

// combinedTensor is CombinedTensor with the shape appended to shape (room
// there spares an allocation) and, with own, the FP32 rounding done in
// res.Values, which the caller then gives up.
func combinedTensor(like *oip.Tensor, res combine.Result, shape []int64, own bool) oip.Tensor {
	t := oip.Tensor{Name: like.Name, Values: res.Values, Shape: shape}
	switch {
	case res.Classes:
		t.Datatype, t.Shape = "INT64", append(t.Shape, int64(res.Rows), 1)
	case like.Datatype == "FP64":
		t.Datatype = "FP64"
	default:
		// Round to what the client will decode, so shadows are compared
		// with exactly the answer given.
		t.Datatype = "FP32"
		if !own {
			t.Values = make([]float64, len(res.Values))
		}
		for i, v := range res.Values {
			t.Values[i] = float64(float32(v))
		}
	}
	if !res.Classes {
		t.Shape = append(t.Shape, like.Shape...)
		if !fills(t.Shape, len(res.Values)) {
			t.Shape = append(t.Shape[:0], int64(res.Rows), int64(res.Width))
		}
	}
	return t
}

func fills(shape []int64, n int) bool {
	acc := int64(1)
	for _, d := range shape {
		acc *= d
	}
	return acc == int64(n)
}

// Combine is the combination the filter performs over the answers of a
// route's members, in member order.
func Combine(r *filterconfig.FanoutRoute, answers []combine.Answer) (combine.Result, error) {
	return combine.Combine(r.EffectiveStrategy(), answers, combine.Options{
		Threshold: r.EffectiveThreshold(),
		Stacking:  r.Stacking,
		Members:   len(r.Members),
	})
}

// answeredOK says whether member state m is an answer.
func answeredOK(m *memberState) bool { return m.done && m.err == "" }

// countAnswered is how many members answered.
func countAnswered(ms []memberState) int {
	n := 0
	for i := range ms {
		if answeredOK(&ms[i]) {
			n++
		}
	}
	return n
}

// report is the account of a fan-out given to the client.
type report struct {
	strategy string
	answered string // labels, comma-separated
	missing  string // "label (reason)", "; "-separated
	latency  string // "label=ms", comma-separated
	members  string // "label=s1 s2", ";"-separated (ParamMembers)
}

// newReport writes the report's four lists into one buffer and cuts them
// out of one string: every fan-out builds a report, and each allocation
// (and the collection it feeds) is slow inside wasm.
func newReport(r *filterconfig.FanoutRoute, ms []memberState) report {
	var rep report
	if r.Sequence {
		rep.strategy = "sequence"
	} else {
		rep.strategy = string(r.EffectiveStrategy())
	}
	b := make([]byte, 0, 64+96*len(ms))
	sep := func(first bool, s string) {
		if !first {
			b = append(b, s...)
		}
	}
	first := true
	for i := range ms {
		if answeredOK(&ms[i]) {
			sep(first, ",")
			b, first = append(b, r.Members[i].Label()...), false
		}
	}
	endAnswered := len(b)
	first = true
	for i := range ms {
		if answeredOK(&ms[i]) {
			continue
		}
		why := ms[i].err
		if !ms[i].called {
			why = "not called"
		} else if !ms[i].done {
			why = "no answer"
		}
		sep(first, "; ")
		b = append(b, r.Members[i].Label()...)
		b = append(append(append(b, " ("...), why...), ')')
		first = false
	}
	endMissing := len(b)
	first = true
	for i := range ms {
		if ms[i].done {
			sep(first, ",")
			b = append(append(b, r.Members[i].Label()...), '=')
			b, first = appendMillis(b, ms[i].latency), false
		}
	}
	endLatency := len(b)
	first = true
	for i := range ms {
		if !answeredOK(&ms[i]) {
			continue
		}
		sep(first, ";")
		b = append(append(b, r.Members[i].Label()...), '=')
		scores := ms[i].answer.Scores
		for j, v := range scores[:min(len(scores), MaxMemberScores)] {
			if j > 0 {
				b = append(b, ' ')
			}
			b = strconv.AppendFloat(b, v, 'g', 6, 64)
		}
		first = false
	}
	// b is this report's alone and never written again: the lists share
	// it rather than a copy.
	all := unsafe.String(unsafe.SliceData(b), len(b))
	rep.answered, rep.missing = all[:endAnswered], all[endAnswered:endMissing]
	rep.latency, rep.members = all[endMissing:endLatency], all[endLatency:]
	return rep
}

// millis formats d in milliseconds with three decimals.
func millis(d time.Duration) string { return string(appendMillis(nil, d)) }

// appendMillis appends d in milliseconds with three decimals, in integer
// arithmetic (float formatting is slow inside wasm).
func appendMillis(b []byte, d time.Duration) []byte {
	us := max(d.Microseconds(), 0)
	b = strconv.AppendInt(b, us/1000, 10)
	b = append(b, '.')
	switch frac := us % 1000; {
	case frac < 10:
		b = append(b, "00"...)
	case frac < 100:
		b = append(b, '0')
	}
	return strconv.AppendInt(b, us%1000, 10)
}

func (rep report) headers() [][2]string { return rep.appendHeaders(nil) }

// appendHeaders appends the report's headers to dst.
func (rep report) appendHeaders(dst [][2]string) [][2]string {
	dst = append(dst, [2]string{HeaderStrategy, rep.strategy}, [2]string{HeaderAnswered, rep.answered},
		[2]string{HeaderLatency, rep.latency})
	if rep.missing != "" {
		dst = append(dst, [2]string{HeaderMissing, rep.missing})
	}
	return dst
}

// maxReportParams is how many parameters a report has at most.
const maxReportParams = 5

// reportParams holds a report's response parameters and the strings they
// point to (a pointer in a parameter's value is not an allocation of its
// own, as a string is: see oip.Param).
type reportParams struct {
	params [maxReportParams]oip.Param
	values [maxReportParams]string
}

// set fills p from the report and returns the parameters.
func (p *reportParams) set(rep report) []oip.Param {
	all := [maxReportParams][2]string{{ParamStrategy, rep.strategy}, {ParamAnswered, rep.answered},
		{ParamLatency, rep.latency}, {ParamMembers, rep.members}, {ParamMissing, rep.missing}}
	out := p.params[:0]
	for i, kv := range all {
		if i >= 3 && kv[1] == "" {
			continue // members and missing only when there are any
		}
		p.values[i] = kv[1]
		out = append(out, oip.Param{Key: kv[0], Value: &p.values[i]})
	}
	return out
}

// quorumMessage explains a failed quorum, naming the missing members.
func quorumMessage(r *filterconfig.FanoutRoute, ms []memberState, rep report) string {
	return fmt.Sprintf("fanout: quorum not met: %d of %d members answered, %d needed; missing: %s",
		countAnswered(ms), len(ms), r.EffectiveQuorum(), rep.missing)
}

// failureReason describes a failed HTTP callout: Envoy reports a timeout
// and a reset alike (no headers), so elapsed time tells them apart.
func failureReason(elapsed time.Duration, timeoutMs uint32) string {
	if elapsed >= time.Duration(timeoutMs)*time.Millisecond*9/10 {
		return "timeout after " + strconv.FormatUint(uint64(timeoutMs), 10) + "ms"
	}
	return "no response (connection failed or reset)"
}

// httpErrorReason describes a member's non-200 REST answer, using the
// protocol's {"error": ...} body when there is one.
func httpErrorReason(status string, body []byte) string {
	msg := ""
	if _, err := oip.DecodeJSONResponse(body); err != nil && !errors.Is(err, oip.ErrInvalid) {
		msg = err.Error()
	}
	if msg == "" {
		return "HTTP " + status
	}
	return "HTTP " + status + ": " + msg
}

// grpcMessage percent-encodes a grpc-message value as the gRPC spec
// requires (bytes outside printable ASCII, and '%').
func grpcMessage(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// feed builds the inputs of sequence step next from the previous step's
// outputs, renamed by the member's Inputs.
func feed(next *filterconfig.FanoutMember, outputs []oip.Tensor) []oip.Tensor {
	in := make([]oip.Tensor, len(outputs))
	for i, t := range outputs {
		in[i] = t
		if to, ok := next.Inputs[t.Name]; ok {
			in[i].Name = to
		}
	}
	return in
}
