package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/rollout"
)

// stateOverlay is validate's --state-dir: the rollout weights a control
// plane sharing that state directory serves, applied to the preview. It
// only reads the state: no lease is taken, nothing is decided or written.
type stateOverlay struct {
	dir *string

	mu   sync.Mutex
	pm   *policy.Mesh
	view *rollout.View
	err  error
}

func addStateOverlayFlag(fs *flag.FlagSet) *stateOverlay {
	return &stateOverlay{dir: fs.String("state-dir", "", "with --output, apply the rollout weights recorded in this control plane state `directory`")}
}

// context returns ctx making the loader apply the state's rollout overlay.
func (s *stateOverlay) context(ctx context.Context) context.Context {
	if *s.dir == "" {
		return ctx
	}
	return controlplane.WithOverlay(ctx, func(pm *policy.Mesh) *policy.Mesh {
		v, err := rollout.Peek(*s.dir, pm)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.pm, s.view, s.err = pm, v, err
		if err != nil {
			return pm
		}
		return v.Overlay.Apply(pm)
	})
}

// report says on w which weights the preview shows and why.
func (s *stateOverlay) report(w io.Writer) {
	if *s.dir == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		fmt.Fprintf(w, "maestro validate: the policy's own weights are shown: %v\n", s.err)
		return
	}
	if s.pm == nil {
		return
	}
	st := closedloop.Describe(s.pm, s.view, nil)
	shown := false
	for _, r := range st.Routes {
		if r.Rollout == "" {
			continue
		}
		var parts []string
		for _, d := range r.Split {
			parts = append(parts, fmt.Sprintf("%s=%d (policy %d)", d.Version, d.Effective, d.Policy))
		}
		fmt.Fprintf(w, "maestro validate: route %s served with rollout weights %s, %s\n", r.Name, strings.Join(parts, " "), r.Rollout)
		shown = true
	}
	if !shown {
		fmt.Fprintf(w, "maestro validate: no rollout of this policy is recorded in %s: the policy's own weights are shown\n", *s.dir)
	}
	fmt.Fprintln(w, "maestro validate: adaptive ensemble weights live in the running control plane only (maestro status): the policy's are shown")
}
