package closedloop

import (
	"context"
	"regexp"
	"strings"
	"time"

	"github.com/maestro-ml/maestro/controlplane/adaptive"
	"github.com/maestro-ml/maestro/controlplane/metricsource"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// The fanout filter's per-member counters (docs/metrics.md), with the
// route and member tags as labels.
const (
	memberAnswers  = "maestro_fanout_member_answers_total"
	memberTimeouts = "maestro_fanout_member_timeouts_total"
	memberFailures = "maestro_fanout_member_failures_total"
)

// feedCounts gives the tuner each adaptive member's answered, timed-out
// and failed calls since the last feed, read from the fanout filter's
// counters: the data plane's own evidence of a member that times out or
// fails, with no help from the application. A number the source cannot
// give is skipped (no evidence), never guessed. Members that share a
// cluster share the filter's counters, so they are not fed.
func (l *Loop) feedCounts(ctx context.Context, pm *policy.Mesh, src metricsource.Source, now time.Time) {
	l.mu.Lock()
	if l.fed == nil {
		l.fed = map[string]time.Time{}
	}
	l.mu.Unlock()
	for _, r := range pm.Routes {
		e := r.Spec.Ensemble
		if e == nil || e.Weights != policy.WeightsAdaptive {
			continue
		}
		name := r.Metadata.Name
		l.mu.Lock()
		last, seen := l.fed[name]
		l.fed[name] = now
		l.mu.Unlock()
		window := now.Sub(last)
		if !seen || window <= 0 {
			continue // the first feed only marks the start
		}
		clusters := map[string]int{}
		for _, m := range e.Members {
			clusters[model.ClusterName(m.Service, m.Version)]++
		}
		for _, m := range e.Members {
			cluster := model.ClusterName(m.Service, m.Version)
			if clusters[cluster] > 1 {
				continue
			}
			var n [3]float64
			ok := true
			for i, metric := range []string{memberAnswers, memberTimeouts, memberFailures} {
				v, err := src.Increase(ctx, memberSelector(metric, name, cluster), window)
				if err != nil {
					l.cfg.Logger.Debug("member counters", "route", name, "member", cluster, "error", err)
					ok = false
					break
				}
				n[i] = v
			}
			if ok {
				l.tuner.ObserveCounts(name, adaptive.MemberName(m), int(n[0]+0.5), int(n[1]+0.5), int(n[2]+0.5))
			}
		}
	}
}

// memberSelector selects metric of member (a cluster) on every Envoy
// route of the policy route, with the filter's tag encoding.
func memberSelector(metric, route, member string) metricsource.Selector {
	return metricsource.Selector{Metric: metric, Matchers: []metricsource.Matcher{
		{Name: "route", Value: regexp.QuoteMeta(tagValue(route)) + "(_.+)?", Regex: true},
		{Name: "member", Value: tagValue(member)},
	}}
}

// tagValue is a tag as the fanout filter writes it: letters, digits, '_',
// '-', '/' and ':' kept, anything else '_', cut at 64 bytes, "none" when
// empty.
func tagValue(s string) string {
	if s == "" {
		return "none"
	}
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '/', r == ':':
			return r
		}
		return '_'
	}, s)
}
