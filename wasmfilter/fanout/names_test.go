package fanout

import (
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

func TestMetricNames(t *testing.T) {
	tests := map[string]struct{ got, want string }{
		"route":       {RouteMetric("requests_total", "fraud"), "maestro_fanout_requests_total.route.fraud"},
		"empty route": {RouteMetric("requests_total", ""), "maestro_fanout_requests_total.route.none"},
		"dotted":      {MemberMetric("answers_total", "fraud", "fraud-logistic.v1"), "maestro_fanout_member_answers_total.route.fraud.member.fraud-logistic_v1"},
		"odd runes":   {ShadowMetric("compared_total", "a b", "x/y:z.é"), "maestro_fanout_shadow_compared_total.route.a_b.shadow.x/y:z__"},
		"long is cut": {RouteMetric("requests_total", strings.Repeat("r", 80)), "maestro_fanout_requests_total.route." + strings.Repeat("r", 64)},
	}
	for name, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", name, tc.got, tc.want)
		}
	}
}

func TestReport(t *testing.T) {
	r := &filterconfig.FanoutRoute{Strategy: filterconfig.StrategyMean, Quorum: 2, TimeoutMs: 300, Members: []filterconfig.FanoutMember{
		{Cluster: "a", Model: "m"}, {Name: "bee", Cluster: "b", Model: "m"}, {Cluster: "c", Model: "m"}}}
	ms := []memberState{
		{called: true, done: true, latency: 1500 * time.Microsecond},
		{called: true, done: true, err: "timeout after 300ms", latency: 300 * time.Millisecond},
		{called: false},
	}
	rep := newReport(r, ms)
	if rep.answered != "a" || rep.missing != "bee (timeout after 300ms); c (not called)" || rep.latency != "a=1.500,bee=300.000" || rep.strategy != "mean" {
		t.Errorf("report %+v", rep)
	}
	want := "fanout: quorum not met: 1 of 3 members answered, 2 needed; missing: bee (timeout after 300ms); c (not called)"
	if got := quorumMessage(r, ms, rep); got != want {
		t.Errorf("quorum message %q\nwant %q", got, want)
	}
	for d, want := range map[time.Duration]string{0: "0.000", 1500 * time.Microsecond: "1.500", 12*time.Second + 7*time.Microsecond: "12000.007", 999: "0.000"} {
		if got := millis(d); got != want {
			t.Errorf("millis(%v) = %q, want %q", d, got, want)
		}
	}
	if got := grpcMessage("50% done\n é"); got != "50%25 done%0A %C3%A9" {
		t.Errorf("grpcMessage = %q", got)
	}
	if got := failureReason(290*time.Millisecond, 300); got != "timeout after 300ms" {
		t.Errorf("failureReason near the timeout = %q", got)
	}
	if got := failureReason(time.Millisecond, 300); !strings.HasPrefix(got, "no response") {
		t.Errorf("failureReason of a fast failure = %q", got)
	}
}
