package localmesh

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/controlplane/rollout"
	"github.com/maestro-ml/maestro/inference/server"
	"github.com/maestro-ml/maestro/inference/tensor"
)

// RouteStats are the gateways' figures per route, refreshed by the live
// view.
type RouteStats map[string]*RouteStat

// RouteStat is what one route's traffic did.
type RouteStat struct {
	// Answers counts the demo clients' answers by the server that gave
	// them (the maestro_server response parameter): the split as clients
	// see it. Failures counts the demo calls that failed.
	Answers  map[string]uint64
	Failures uint64
	// The fanout filter's stats (docs/filters.md).
	Requests       uint64            // OIP requests the filter handled
	QuorumFailures uint64            // answered 503 / UNAVAILABLE for want of answers
	MemberAnswers  map[string]uint64 // member -> answers used
	MemberTimeouts map[string]uint64 // member -> excluded for a timeout
	MemberFailures map[string]uint64 // member -> excluded for another failure
	ShadowSent     uint64
	ShadowCompared uint64
	ShadowRows     uint64
	ShadowAgree    uint64 // rows whose classes agree
	// Burn is the slo filter's largest error burn rate over the route's
	// models and windows at its last evaluation; HasBurn says whether the
	// route has one.
	Burn    float64
	HasBurn bool
	// Rollout is the route's rollout as the control plane drives it, nil
	// without one; Weights are its ensemble's members when their weights
	// are adaptive. Both are read from the control plane's /debug/status.
	Rollout *rollout.State
	Weights []closedloop.MemberWeight
}

// Agreement is the share of compared shadow rows whose class agrees.
func (r *RouteStat) Agreement() float64 {
	if r.ShadowRows == 0 {
		return 0
	}
	return float64(r.ShadowAgree) / float64(r.ShadowRows)
}

// answers records the demo clients' answers per route.
type answers struct {
	mu     sync.Mutex
	routes map[string]*routeAnswers
}

// routeAnswers is one route's record.
type routeAnswers struct {
	mu       sync.Mutex
	servers  map[string]uint64
	failures uint64
}

func newAnswers() *answers { return &answers{routes: map[string]*routeAnswers{}} }

// of returns route's record, creating it.
func (a *answers) of(route string) *routeAnswers {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.routes[route]
	if r == nil {
		r = &routeAnswers{servers: map[string]uint64{}}
		a.routes[route] = r
	}
	return r
}

// record counts one call; a nil record counts nothing.
func (r *routeAnswers) record(resp *tensor.JSONResponse, err error) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failures++
		return
	}
	name, _ := resp.Parameters[server.ServerParameter].(string)
	if name == "" {
		// An ensemble's answer is the filter's combination, of no one
		// server.
		name = "combined"
	}
	r.servers[name]++
}

// fill copies the recorded answers into st.
func (a *answers) fill(st RouteStats) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, r := range a.routes {
		rs := st.route(name)
		r.mu.Lock()
		for s, n := range r.servers {
			rs.Answers[s] = n
		}
		rs.Failures = r.failures
		r.mu.Unlock()
	}
}

func (st RouteStats) route(name string) *RouteStat {
	r := st[name]
	if r == nil {
		r = &RouteStat{Answers: map[string]uint64{}, MemberAnswers: map[string]uint64{},
			MemberTimeouts: map[string]uint64{}, MemberFailures: map[string]uint64{}}
		st[name] = r
	}
	return r
}

// scrapeTimeout bounds one read of a gateway's stats.
const scrapeTimeout = 5 * time.Second

// scrapeGateway adds the fanout and slo stats of the gateway whose admin
// port is admin to st, read from /stats/prometheus as Prometheus would.
func scrapeGateway(ctx context.Context, admin string, st RouteStats) error {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/stats/prometheus", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("gateway stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("gateway stats: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(pmodel.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return fmt.Errorf("gateway stats: %w", err)
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			addMetric(st, name, m)
		}
	}
	return nil
}

// addMetric adds one sample of the filters' stats to st.
func addMetric(st RouteStats, family string, m *dto.Metric) {
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	route := labels["route"]
	if route == "" {
		return
	}
	v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
	n := uint64(v)
	r := st.route(route)
	member := labels["member"]
	switch family {
	case "maestro_fanout_requests_total":
		r.Requests += n
	case "maestro_fanout_quorum_failures_total":
		r.QuorumFailures += n
	case "maestro_fanout_member_answers_total":
		r.MemberAnswers[member] += n
	case "maestro_fanout_member_timeouts_total":
		r.MemberTimeouts[member] += n
	case "maestro_fanout_member_failures_total":
		r.MemberFailures[member] += n
	case "maestro_fanout_shadow_sent_total":
		r.ShadowSent += n
	case "maestro_fanout_shadow_compared_total":
		r.ShadowCompared += n
	case "maestro_fanout_shadow_rows_total":
		r.ShadowRows += n
	case "maestro_fanout_shadow_class_agree_rows_total":
		r.ShadowAgree += n
	case "maestro_slo_burn_rate_x1000":
		r.HasBurn = true
		r.Burn = max(r.Burn, v/1000)
	}
}

// routeLines formats st as one line per route, routes sorted:
//
//	churn           answers churn-v1 80 churn-v2 20 | rollout v2 progressing, step 1/3, weight 10 (new rollout)
//	fraud           answers fraud-v1 900 fraud-v2 100 | shadow 200 sent, 180 compared, 93.0% agree | burn 0.00
//	fraud-ensemble  ensemble 12 requests, members fraud_v1 12 fraud_v2 11 (1 timeouts), 0 quorum failures | adaptive weights fraud.v1/fraud 2 (policy 1, quality 1.00), ... | burn 0.00
func routeLines(st RouteStats) []string {
	var out []string
	width := 0
	for name := range st {
		width = max(width, len(name))
	}
	for _, name := range sortedKeys(st) {
		r := st[name]
		var parts []string
		if len(r.Answers) > 0 || r.Failures > 0 {
			var as []string
			for _, s := range sortedKeys(r.Answers) {
				as = append(as, fmt.Sprintf("%s %d", s, r.Answers[s]))
			}
			p := "answers " + strings.Join(as, " ")
			if r.Failures > 0 {
				p += fmt.Sprintf(", %d failed", r.Failures)
			}
			parts = append(parts, p)
		}
		if r.Rollout != nil {
			parts = append(parts, rolloutPart(r.Rollout))
		}
		members := unionKeys(r.MemberAnswers, r.MemberTimeouts, r.MemberFailures)
		if len(members) > 0 {
			var ms []string
			for _, m := range members {
				s := fmt.Sprintf("%s %d", m, r.MemberAnswers[m])
				var bad []string
				if t := r.MemberTimeouts[m]; t > 0 {
					bad = append(bad, fmt.Sprintf("%d timeouts", t))
				}
				if f := r.MemberFailures[m]; f > 0 {
					bad = append(bad, fmt.Sprintf("%d failed", f))
				}
				if len(bad) > 0 {
					s += " (" + strings.Join(bad, ", ") + ")"
				}
				ms = append(ms, s)
			}
			parts = append(parts, fmt.Sprintf("ensemble %d requests, members %s, %d quorum failures", r.Requests, strings.Join(ms, " "), r.QuorumFailures))
		}
		if len(r.Weights) > 0 {
			parts = append(parts, weightsPart(r.Weights))
		}
		if r.ShadowSent > 0 {
			parts = append(parts, fmt.Sprintf("shadow %d sent, %d compared, %.1f%% agree", r.ShadowSent, r.ShadowCompared, 100*r.Agreement()))
		}
		if r.HasBurn {
			parts = append(parts, "burn "+strconv.FormatFloat(r.Burn, 'f', 2, 64))
		}
		if len(parts) == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("  %-*s  %s", width, name, strings.Join(parts, " | ")))
	}
	return out
}

// unionKeys returns the keys of all ms, sorted.
func unionKeys(ms ...map[string]uint64) []string {
	var keys []string
	for _, m := range ms {
		for k := range m {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}
