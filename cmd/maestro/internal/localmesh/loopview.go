package localmesh

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/maestro-ml/maestro/cmd/maestro/internal/adminstatus"
	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/controlplane/rollout"
)

// loopView reads the closed loop's state for the live view from the
// control plane's /debug/status, the document `maestro status` prints:
// what the live view shows is what the control plane serves.
type loopView struct {
	admin  string
	logger *slog.Logger
	// last is the latest document read: a control plane restarting
	// answers nothing for a moment, and the view keeps what it showed.
	last *adminstatus.Document
}

// fill adds each route's rollout and adaptive member weights to st.
func (v *loopView) fill(ctx context.Context, st RouteStats) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	doc, err := adminstatus.Fetch(ctx, http.DefaultClient, v.admin)
	if err != nil {
		v.logger.Debug("read the control plane's status", "error", err)
	} else {
		v.last = &doc
	}
	if v.last == nil {
		return
	}
	for _, r := range v.last.Routes {
		if r.Adaptive && len(r.Members) > 0 {
			st.route(r.Name).Weights = r.Members
		}
	}
	for _, s := range v.last.Rollouts {
		st.route(s.Route).Rollout = &s
	}
}

// rolloutPart describes a rollout for a route's live line: its phase in
// words (held is a progressing rollout whose last judgement held it), its
// step and the version's weight, and the reason of its last decision.
func rolloutPart(s *rollout.State) string {
	step := fmt.Sprintf("step %d/%d, weight %d", s.Step+1, len(s.Steps), s.Weight)
	why, aside := "", ""
	if s.LastReason != "" {
		why, aside = ": "+s.LastReason, " ("+s.LastReason+")"
	}
	switch {
	case s.Phase == rollout.PhasePromoted:
		return fmt.Sprintf("rollout %s promoted, weight %d", s.Version, s.Weight)
	case s.Phase == rollout.PhaseFailed:
		return fmt.Sprintf("rollout %s rolled back at %s%s", s.Version, step, why)
	case s.LastDecision == rollout.DecisionHold:
		return fmt.Sprintf("rollout %s held at %s%s", s.Version, step, why)
	}
	return fmt.Sprintf("rollout %s progressing, %s%s", s.Version, step, aside)
}

// weightsPart describes an adaptive ensemble's members for a route's live
// line: the weight served, the policy's, and the smoothed quality once
// measured.
func weightsPart(ms []closedloop.MemberWeight) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		s := fmt.Sprintf("%s %s (policy %s", m.Member, short(m.Effective), short(m.Policy))
		if m.Quality != nil {
			s += ", quality " + strconv.FormatFloat(*m.Quality, 'f', 2, 64)
		}
		parts = append(parts, s+")")
	}
	return "adaptive weights " + strings.Join(parts, ", ")
}

// short formats a weight with at most three decimals.
func short(f float64) string {
	return strconv.FormatFloat(math.Round(f*1000)/1000, 'f', -1, 64)
}
