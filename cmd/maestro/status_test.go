package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/cmd/maestro/internal/adminstatus"
	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/controlplane/rollout"
)

func TestStatusPrintsTables(t *testing.T) {
	q := 0.91
	st := adminstatus.Document{Version: "abc", Status: closedloop.Status{
		Leader: true, Holder: "cp-1",
		Routes: []closedloop.RouteStatus{
			{Name: "fraud", Rollout: "progressing step 2/4", Split: []closedloop.SplitWeight{
				{Service: "fraud", Version: "v1", Policy: 100, Effective: 75},
				{Service: "fraud", Version: "v2", Policy: 0, Effective: 25},
			}},
			{Name: "churn", Members: []closedloop.MemberWeight{
				{Member: "churn.v1/churn", Policy: 1, Effective: 0.05, Quality: &q},
				{Member: "churn.v2/churn", Policy: 1, Effective: 1},
			}},
		},
		Rollouts: []rollout.State{{Route: "fraud", Version: "v2", Phase: "progressing", Steps: []uint32{5, 25, 50, 100}, Step: 1, Weight: 25,
			NextJudgement: time.Date(2026, 1, 1, 0, 2, 0, 0, time.UTC), LastDecision: "advance", LastReason: "every threshold met"}},
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/status" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"status", "--admin", strings.TrimPrefix(srv.URL, "http://")}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	want := `version abc

ROUTE  SERVICE  VERSION  POLICY  SERVED  ROLLOUT
fraud  fraud    v1       100     75      progressing step 2/4
       fraud    v2       0       25      -
churn  -        -        -       -       -

ROLLOUTS (driven by this replica; lease holder cp-1)
ROUTE  VERSION  PHASE        STEP  WEIGHT  NEXT JUDGEMENT        LAST DECISION
fraud  v2       progressing  2/4   25      2026-01-01T00:02:00Z  advance: every threshold met

ENSEMBLE  MEMBER          POLICY  SERVED  QUALITY
churn     churn.v1/churn  1.000   0.050   0.910
churn     churn.v2/churn  1.000   1.000   -
`
	if got := stdout.String(); got != want {
		t.Errorf("status output:\n%s\nwant:\n%s", got, want)
	}
}

func TestStatusErrors(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer failing.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := strings.TrimPrefix(closed.URL, "http://")
	closed.Close()
	for name, tc := range map[string]struct {
		args   []string
		code   int
		stderr string
	}{
		"server error": {[]string{"status", "--admin", failing.URL}, 1, "HTTP 500: boom"},
		"unreachable":  {[]string{"status", "--admin", closedAddr}, 1, "read status"},
		"extra args":   {[]string{"status", "x"}, 2, "unexpected arguments: x"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tc.args, &stdout, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("exit %d stderr %q, want %d containing %q", code, stderr.String(), tc.code, tc.stderr)
			}
		})
	}
}
