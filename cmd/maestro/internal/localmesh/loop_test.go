package localmesh

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/cmd/maestro/internal/localmesh/meshtest"
	"github.com/maestro-ml/maestro/controlplane/closedloop"
)

// TestUpDrivesARollout runs `maestro up` on a policy promoting fraud v2
// with demo traffic: the rollout is judged on the local servers' own
// /metrics, found without any flag, and promoted through its steps.
func TestUpDrivesARollout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole mesh")
	}
	dir := t.TempDir()
	ports := meshtest.FreePorts(t, 2)
	policyPath := filepath.Join(dir, "policy.yaml")
	text := string(meshtest.Fraud{Name: "test", CADir: filepath.Join(dir, "ca"), V1Port: ports[0], V2Port: ports[1], V1Weight: 100}.YAML())
	const split = "    - {version: v2, weight: 0}\n"
	if !strings.Contains(text, split) {
		t.Fatalf("meshtest's policy changed: no %q in\n%s", split, text)
	}
	text = strings.Replace(text, split, split+"  rollout: {version: v2, steps: [50, 100], stepInterval: 1s, minRequests: 20}\n", 1)
	if err := os.WriteFile(policyPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	started := make(chan Started, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Dir: dir, Policy: policyPath, XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
			DemoTraffic: true, Rate: 500, Interval: 50 * time.Millisecond,
			OnReady: func(s Started) { started <- s },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	})
	var s Started
	select {
	case s = <-started:
	case err := <-done:
		t.Fatalf("up ended: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("up not ready within 60s")
	}
	deadline := time.Now().Add(60 * time.Second)
	var last closedloop.Status
	for {
		res, err := http.Get("http://" + s.Admin + "/debug/status")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(res.Body).Decode(&last)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(last.Rollouts) == 1 && last.Rollouts[0].Phase != "progressing" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout not finished within 60s: %+v", last.Rollouts)
		}
		time.Sleep(100 * time.Millisecond) // polling interval of a bounded wait
	}
	if r := last.Rollouts[0]; r.Phase != "promoted" {
		t.Fatalf("rollout %s: %s", r.Phase, r.LastReason)
	}
}
