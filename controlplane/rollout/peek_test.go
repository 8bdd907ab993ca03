package rollout

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func TestPeekShowsTheStateWithoutDeciding(t *testing.T) {
	h := newHarness(t)
	m := mesh(t, canary)
	h.src.serve(200, 0, 40*time.Millisecond)
	c := h.controller(t, "a")
	tick(t, c, m)
	h.clock.Add(time.Minute)
	tick(t, c, m)
	before := len(h.audit.Kinds())

	v, err := Peek(h.dir, m)
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, d := range v.Overlay["fraud"] {
		got += d.Version + "=" + itoa(d.Weight) + " "
	}
	if got != "v1=75 v2=25 " {
		t.Errorf("peeked overlay %q, want the step the controller reached", got)
	}
	if v.Leader || v.Holder != "" || len(v.Rollouts) != 1 {
		t.Errorf("peek view %+v: want no leadership and one rollout", v)
	}
	if n := len(h.audit.Kinds()); n != before {
		t.Errorf("peek recorded %d decisions", n-before)
	}
	// An edited route is not overlaid: the state is for the old spec.
	edited := mesh(t, canary+"  timeout: 2s\n")
	if v, err := Peek(h.dir, edited); err != nil || len(v.Overlay) != 0 {
		t.Errorf("edited route: overlay %v, err %v; want none", v.Overlay, err)
	}
	if _, err := Peek(filepath.Join(h.dir, "missing"), m); err == nil {
		t.Error("missing state directory accepted")
	}
}

func itoa(w uint32) string { return fmt.Sprint(w) }
