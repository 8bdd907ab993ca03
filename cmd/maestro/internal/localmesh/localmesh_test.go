package localmesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/cmd/maestro/internal/localmesh/meshtest"
	"github.com/maestro-ml/maestro/controlplane/server"
	"github.com/maestro-ml/maestro/internal/syncbuf"
)

// churn is a second proxyless target in the same node group: each client
// asks only for the listener it dials.
const churn = `apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: churn}
spec:
  protocol: grpc
  versions:
    - name: v1
      labels: {model: churn}
      endpoints: [{address: 127.0.0.1, port: %d}]
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: churn}
spec:
  service: churn
  match: {model: churn}
`

func writePolicy(t *testing.T, path string, ports []int, v1 int, caDir string) {
	t.Helper()
	meshtest.Fraud{Name: "test", CADir: caDir, V1Port: ports[0], V2Port: ports[1], V1Weight: v1,
		Extra: fmt.Sprintf(churn, ports[2])}.Write(t, path)
}

// share waits until fraud has served at least n more requests than in
// base, and returns v2's share of them.
func share(t *testing.T, counts <-chan Counts, base Counts, n uint64) (float64, Counts) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case c := <-counts:
			v1 := c["fraud"]["v1"] - base["fraud"]["v1"]
			v2 := c["fraud"]["v2"] - base["fraud"]["v2"]
			if v1+v2 >= n {
				return float64(v2) / float64(v1+v2), c
			}
		case <-deadline:
			t.Fatalf("fewer than %d requests served within 60s", n)
		}
	}
}

// proxylessListeners returns, by node, the listener version each demo
// client (the proxyless group) has acknowledged, from the control plane's
// status page.
func proxylessListeners(t *testing.T, admin string) map[string]string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/debug/status")
	if err != nil {
		t.Fatalf("control plane status: %v", err)
	}
	defer resp.Body.Close()
	var st struct{ Nodes []server.NodeStatus }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("control plane status: %v", err)
	}
	out := map[string]string{}
	for _, n := range st.Nodes {
		if n.Group != "proxyless" {
			continue
		}
		for _, ty := range n.Types {
			if ty.Type == "listener" {
				out[n.ID] = ty.Acked
			}
		}
	}
	return out
}

// awaitListenerAcks waits until every demo client in before has
// acknowledged a listener version other than the one it had then: from
// that point its calls follow the edited routes.
func awaitListenerAcks(t *testing.T, admin string, before map[string]string) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		now := proxylessListeners(t, admin)
		pending := 0
		for id, v := range before {
			if now[id] == v {
				pending++
			}
		}
		if pending == 0 {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%d of %d demo clients did not acknowledge the edited listeners within 30s: %v (before %v)",
				pending, len(before), now, before)
		}
	}
}

func TestUpSplitsDemoTrafficAndFollowsPolicyEdits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole mesh")
	}
	dir := t.TempDir()
	ports := meshtest.FreePorts(t, 3)
	policyPath := filepath.Join(dir, "policy.yaml")
	caDir := filepath.Join(dir, "ca")
	writePolicy(t, policyPath, ports, 90, caDir)

	counts := make(chan Counts, 1)
	reloads := make(chan error, 8)
	started := make(chan Started, 1)
	var out, logs syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Dir: dir, Policy: policyPath,
			XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
			DemoTraffic: true, Rate: 1000,
			Interval: 50 * time.Millisecond, Out: &out,
			Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
			OnReady: func(s Started) { started <- s },
			OnCounts: func(c Counts) {
				select { // keep only the latest
				case <-counts:
				default:
				}
				counts <- c
			},
			OnReload: func(_ string, err error) { reloads <- err },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	})

	got, base := share(t, counts, nil, 2000)
	if c := <-counts; c["churn"]["v1"] == 0 {
		t.Errorf("the churn target got no traffic: %v", c)
	}
	if got < 0.07 || got > 0.13 {
		t.Errorf("v2 share %.3f with weights 90/10, want within 3 points of 0.10", got)
	}
	for _, want := range []string{"SERVICE", "fraud", "xds:///fraud", "v1 90% / v2 10%", "grpc-bootstrap.json"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("start-up output lacks %q:\n%s", want, out.String())
		}
	}

	// The demo clients have sent traffic, so each has its listener.
	admin := (<-started).Admin
	before := proxylessListeners(t, admin)
	if len(before) == 0 {
		t.Fatal("the control plane lists no demo client in the proxyless group")
	}
	writePolicy(t, policyPath, ports, 50, caDir)
	select {
	case err := <-reloads:
		if err != nil {
			t.Fatalf("reload of a valid edit failed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the policy edit was not reloaded within 10s")
	}
	// Count from after every client has the edited routes; requests in
	// flight before that may still follow the old weights, so skip a few
	// hundred more.
	awaitListenerAcks(t, admin, before)
	_, base = share(t, counts, base, 300)
	got, _ = share(t, counts, base, 4000) // 3 points is 3.8 standard deviations at 50%
	if got < 0.47 || got > 0.53 {
		t.Errorf("v2 share %.3f after the edit to 50/50, want within 3 points of 0.50", got)
	}

	// A broken edit is rejected: the control plane logs its problem once,
	// and up's own output says so without repeating the problem.
	writePolicy(t, policyPath, ports, 120, caDir)
	var rejected error
	select {
	case rejected = <-reloads:
		if rejected == nil {
			t.Fatal("an edit with weights 120/-20 was accepted")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the broken edit was not reloaded within 10s")
	}
	problem := strings.SplitN(rejected.Error(), "\n", 2)[0]
	if n := strings.Count(out.String(), "policy change rejected"); n != 1 {
		t.Errorf("up's output says %d times that the change was rejected, want once:\n%s", n, out.String())
	}
	if strings.Contains(out.String(), problem) {
		t.Errorf("up's output repeats the problem %q the log already has:\n%s", problem, out.String())
	}
	// The text handler quotes the message: compare unquoted.
	if n := strings.Count(strings.ReplaceAll(logs.String(), `\"`, `"`), problem); n != 1 {
		t.Errorf("the log has the problem %q %d times, want once:\n%s", problem, n, logs.String())
	}
}

func TestUpReportsABusyPort(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ports := append([]int{busy.Addr().(*net.TCPAddr).Port}, meshtest.FreePorts(t, 2)...)
	policyPath := filepath.Join(dir, "policy.yaml")
	writePolicy(t, policyPath, ports, 90, filepath.Join(dir, "ca"))
	err = Run(context.Background(), Config{Dir: dir, Policy: policyPath, XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err == nil {
		t.Fatal("Run started with its port taken")
	}
	want := fmt.Sprintf("port 127.0.0.1:%d, wanted by service fraud version v1, is already in use", ports[0])
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

func TestUpExtractsTheDemoWithoutOverwritingEdits(t *testing.T) {
	dir := t.TempDir()
	edited := []byte("# my edit\n")
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), edited, 0o644); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), Config{Dir: dir, XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err == nil {
		t.Fatal("an empty policy started a mesh")
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "mesh.yaml")); string(got) != string(edited) {
		t.Errorf("mesh.yaml was overwritten: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "models", "fraud", "config.yaml")); err != nil {
		t.Errorf("demo models not extracted: %v", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Errorf("unexpected cancel: %v", err)
	}
}

func TestCountsLineSharesAreOfRecentRequests(t *testing.T) {
	prev := Counts{"fraud": {"v1": 900, "v2": 100}}
	now := Counts{"fraud": {"v1": 950, "v2": 150}, "churn": {"v1": 5}}
	got := countsLine(now, prev)
	want := "requests  churn: v1 5 (100.0%) | fraud: v1 950 (50.0%) v2 150 (50.0%)"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := countsLine(Counts{"fraud": {"v1": 0}}, nil); got != "requests  fraud: v1 0 (0.0%)" {
		t.Errorf("idle: %q", got)
	}
}
