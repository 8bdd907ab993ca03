package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/controlplane/metricsource"
	"github.com/maestro-ml/maestro/internal/fakes"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

const rolloutPolicy = `apiVersion: maestro.dev/v1alpha1
kind: Mesh
metadata: {name: loop}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud}
spec:
  versions:
    - {name: v1, endpoints: [{address: 127.0.0.1, port: 9001}]}
    - {name: v2, endpoints: [{address: 127.0.0.1, port: 9002}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud}
spec:
  service: fraud
  split: [{version: v1, weight: 100}]
  rollout: {version: v2, steps: [5, 25, 50, 100], stepInterval: 1s, minRequests: 10, analysis: {maxErrorRate: 5}}
`

// healthySource says every version served 100 requests without error.
type healthySource struct{}

func (healthySource) Increase(_ context.Context, sel metricsource.Selector, _ time.Duration) (float64, error) {
	if strings.HasSuffix(sel.Metric, "_xx") {
		return 0, nil
	}
	return 100, nil
}

func (healthySource) Quantile(context.Context, float64, metricsource.Selector, time.Duration) (float64, error) {
	return 10, nil
}

type debugStatus struct {
	Version string `json:"version"`
	closedloop.Status
}

func readStatus(t *testing.T, admin string) debugStatus {
	t.Helper()
	code, body := get(t, "http://"+admin+"/debug/status")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var st debugStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("decode status: %v\n%s", err, body)
	}
	return st
}

// effective is route's served split as "v1=95 v2=5".
func effective(st debugStatus, route string) string {
	for _, r := range st.Routes {
		if r.Name != route {
			continue
		}
		var parts []string
		for _, s := range r.Split {
			parts = append(parts, fmt.Sprintf("%s=%d", s.Version, s.Effective))
		}
		return strings.Join(parts, " ")
	}
	return ""
}

// waitStatus polls /debug/status until ok, bounded by waitLimit.
func waitStatus(t *testing.T, admin string, what string, ok func(debugStatus) bool) debugStatus {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		st := readStatus(t, admin)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v; last status %+v", what, waitLimit, st)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a bounded wait
	}
}

// TestOverlayChangesPushWithoutFileChange runs a control plane with a
// closed loop on a fake clock: the rollout's first step, and each step it
// passes, changes the served version and the effective weights in
// /debug/status, though the policy file never changes.
func TestOverlayChangesPushWithoutFileChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(path, []byte(rolloutPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	clock := fakes.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	loop, err := closedloop.New(closedloop.Config{StateDir: dir, Identity: "test", Source: healthySource{}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan Addrs, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- WithCertificates(ctx, []string{path}, CertConfig{DryRun: true, Plaintext: true}, func(ctx context.Context, c *Certificates) error {
			return Run(ctx, Config{
				Paths: []string{path}, Load: c.Loader(), Certs: c, Insecure: true, InsecureSecrets: true, Loop: loop,
				XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Registry: telemetry.NewRegistry(),
				Ready: func(a Addrs) { ready <- a },
			})
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	var addrs Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("run ended early: %v", err)
	case <-time.After(waitLimit):
		t.Fatal("control plane not ready")
	}
	admin := addrs.Admin.String()

	seen := map[string]bool{}
	for i, want := range []string{"v1=95 v2=5", "v1=75 v2=25", "v1=50 v2=50", "v1=0 v2=100"} {
		if i > 0 {
			clock.Add(time.Second) // the step's interval passes: it is judged
		}
		waitStatus(t, admin, want, func(st debugStatus) bool { return effective(st, "fraud") == want })
		// The overlay reaches the snapshots: every step is a new version.
		st := waitStatus(t, admin, "a new version for "+want, func(st debugStatus) bool { return !seen[st.Version] })
		seen[st.Version] = true
		if len(st.Rollouts) != 1 || !st.Leader {
			t.Fatalf("status rollouts %+v leader %v: want one, driven here", st.Rollouts, st.Leader)
		}
	}
	clock.Add(time.Second) // the last step passes: promoted
	st := waitStatus(t, admin, "promoted", func(st debugStatus) bool { return st.Rollouts[0].Phase == "promoted" })
	if effective(st, "fraud") != "v1=0 v2=100" || st.Routes[0].Split[0].Policy != 100 || st.Routes[0].Rollout != "promoted" {
		t.Errorf("final status %+v: want promoted, with the policy's own weights shown beside", st)
	}
}

func TestFeedbackEndpoint(t *testing.T) {
	loop, err := closedloop.New(closedloop.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cp := &plane{cfg: Config{Loop: loop, Registry: telemetry.NewRegistry()}}
	h := cp.adminHandler()
	for _, tc := range []struct {
		name, path, body string
		want             int
		msg              string
	}{
		{"unknown request", "/v1/feedback", `{"requestId": "r1", "value": 1}`, http.StatusNotFound, "unknown request id"},
		{"no value", "/v1/feedback", `{"requestId": "r1"}`, http.StatusBadRequest, `"value" are required`},
		{"unknown field", "/v1/feedback", `{"requestId": "r1", "value": 1, "x": 2}`, http.StatusBadRequest, `unknown field "x"`},
		{"not json", "/v1/feedback", `{`, http.StatusBadRequest, "decode body"},
		{"observation", "/v1/observations", `{"route": "fraud", "requestId": "r2", "ensemble": 1, "answers": [{"member": "fraud.v1/fraud", "outcome": "answered", "value": 1}]}`, http.StatusNoContent, ""},
		{"observation bad outcome", "/v1/observations", `{"route": "fraud", "answers": [{"member": "m", "outcome": "late"}]}`, http.StatusBadRequest, `answers[0].outcome "late"`},
		{"observation without value", "/v1/observations", `{"route": "fraud", "answers": [{"member": "m", "outcome": "answered"}]}`, http.StatusBadRequest, "answers[0].value is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{header: http.Header{}}
			req, err := http.NewRequest(http.MethodPost, tc.path, bytes.NewBufferString(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			h.ServeHTTP(rec, req)
			if rec.code != tc.want || !strings.Contains(rec.body.String(), tc.msg) {
				t.Errorf("%s %s: %d %q, want %d containing %q", tc.path, tc.body, rec.code, rec.body.String(), tc.want, tc.msg)
			}
		})
	}
}

type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) { r.code = code }
