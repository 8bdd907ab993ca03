package localmesh

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/cmd/maestro/internal/localmesh/meshtest"
	"github.com/maestro-ml/maestro/examples"
	"github.com/maestro-ml/maestro/inference/oipclient"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/server"
	"github.com/maestro-ml/maestro/internal/syncbuf"
	"github.com/maestro-ml/maestro/wasmfilter/fanout"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// waitLimit bounds every wait of the gateway tests: generous, for a loaded
// machine; each wait ends as soon as its condition holds.
const waitLimit = 60 * time.Second

// demoMesh is a running `maestro up` of the embedded demo, through its
// built-in gateway.
type demoMesh struct {
	dir, policy string
	started     Started
	client      pb.GRPCInferenceServiceClient
	rest        string // base URL of the REST gateway
	models      string

	mu     sync.Mutex
	counts Counts
	routes RouteStats
	gen    int // refreshes of counts and routes

	reloads chan error
	out     *syncbuf.Buffer
}

// startDemo extracts the embedded demo into a temporary directory, moves
// its servers to free loopback ports (and its CA into the directory), puts
// the filters' .wasm where the policy names them, and runs it, with edit
// (if not nil) changing the configuration first.
func startDemo(t *testing.T, edit func(*Config)) *demoMesh {
	t.Helper()
	// Expensive set-up first, outside every wait: building the filters.
	fanoutWasm := wasmtest.Build(t, "github.com/maestro-ml/maestro/wasmfilter/fanout/cmd")
	sloWasm := wasmtest.Build(t, "github.com/maestro-ml/maestro/wasmfilter/slo/cmd")
	dir := t.TempDir()
	if err := extract(examples.Demo(), dir); err != nil {
		t.Fatal(err)
	}
	wasmDir := filepath.Join(dir, "build", "wasm")
	if err := os.MkdirAll(wasmDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"fanout.wasm": fanoutWasm, "slo.wasm": sloWasm} {
		if err := os.WriteFile(filepath.Join(wasmDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Every server port of the demo (9001..., 91xx for REST) moves to a
	// free one, the same in both files.
	endpoint := regexp.MustCompile(`port: (9[01]\d\d)\}`)
	moved := map[string]string{}
	for _, name := range []string{"mesh.yaml", "mesh-rest.yaml"} {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		text := endpoint.ReplaceAllStringFunc(string(data), func(m string) string {
			old := endpoint.FindStringSubmatch(m)[1]
			if moved[old] == "" {
				moved[old] = strconv.Itoa(meshtest.FreePorts(t, 1)[0])
			}
			return "port: " + moved[old] + "}"
		})
		text = strings.Replace(text, "stateDir: .maestro/ca", "stateDir: "+filepath.Join(dir, "ca"), 1)
		replaceFile(t, path, text)
	}
	if len(moved) < 14 {
		t.Fatalf("moved %d server ports of the demo, want its 7 gRPC and 7 REST ones: %v", len(moved), moved)
	}
	policyPath := filepath.Join(dir, "mesh.yaml")

	m := &demoMesh{dir: dir, policy: policyPath, models: filepath.Join(dir, "models"), reloads: make(chan error, 8), out: &syncbuf.Buffer{}}
	started := make(chan Started, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := Config{
		Dir: dir, XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		WasmDir: dir, GatewayPorts: map[string]int{"edge": 0, "edge-rest": 0},
		Interval: 50 * time.Millisecond, Out: m.out, Logger: slog.New(slog.DiscardHandler),
		OnReady:  func(s Started) { started <- s },
		OnCounts: func(c Counts) { m.mu.Lock(); m.counts = c; m.mu.Unlock() },
		OnRoutes: func(r RouteStats) { m.mu.Lock(); m.routes = r; m.gen++; m.mu.Unlock() },
		OnReload: func(_ string, err error) { m.reloads <- err },
	}
	if edit != nil {
		edit(&cfg)
	}
	go func() { done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	})
	select {
	case m.started = <-started:
	case err := <-done:
		t.Fatalf("up ended before it was ready: %v", err)
	case <-time.After(3 * waitLimit):
		t.Fatal("up not ready")
	}
	if len(m.started.Gateways) != 2 || m.started.Gateways[0].Name != "edge" || m.started.Gateways[1].Name != "edge-rest" {
		t.Fatalf("gateways = %+v, want edge and edge-rest", m.started.Gateways)
	}
	m.rest = "http://" + m.started.Gateways[1].Listener
	conn, err := grpc.NewClient(m.started.Gateways[0].Listener, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	m.client = pb.NewGRPCInferenceServiceClient(conn)
	return m
}

func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// request is a standard OIP client's request for route: model_name in the
// body and nothing else to route by.
func (m *demoMesh) request(t *testing.T, route string) *pb.ModelInferRequest {
	t.Helper()
	inputs := route
	if route == "fraud-ensemble" {
		inputs = "fraud"
	}
	d, err := demoRequest(m.models, inputs)
	if err != nil {
		t.Fatal(err)
	}
	req, err := oipclient.GRPCRequest(route, "", d.body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// infer calls ModelInfer through the gateway and returns the response and
// its trailers.
func (m *demoMesh) infer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, metadata.MD, error) {
	var header, trailer metadata.MD
	resp, err := m.client.ModelInfer(ctx, req, grpc.Header(&header), grpc.Trailer(&trailer))
	return resp, metadata.Join(header, trailer), err
}

// server returns the started server of service version.
func (m *demoMesh) server(t *testing.T, service, version string) StartedServer {
	t.Helper()
	for _, s := range m.started.Servers {
		if s.Service == service && s.Version == version {
			return s
		}
	}
	t.Fatalf("no server for %s %s", service, version)
	return StartedServer{}
}

// await polls cond (under the mesh's lock, with the latest counts and
// route stats) until it holds or limit passes.
func (m *demoMesh) await(t *testing.T, limit time.Duration, what string, cond func(Counts, RouteStats) bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		m.mu.Lock()
		ok := m.counts != nil && m.routes != nil && cond(m.counts, m.routes)
		m.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			m.mu.Lock()
			defer m.mu.Unlock()
			t.Fatalf("%s: not within %s (counts %v)", what, limit, m.counts)
		}
		time.Sleep(10 * time.Millisecond) // polling interval of a bounded wait
	}
}

func TestUpDemoThroughTheGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole demo mesh")
	}
	m := startDemo(t, nil)
	if out := m.out.String(); !strings.Contains(out, "GATEWAY") || !strings.Contains(out, m.started.Gateways[0].Listener) {
		t.Errorf("the start-up table does not name the gateway's listener %s:\n%s", m.started.Gateways[0].Listener, out)
	}

	t.Run("standard clients reach every route", func(t *testing.T) {
		for _, route := range []string{"fraud", "fraud-ensemble", "churn", "recommendations"} {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			resp, md, err := m.infer(ctx, m.request(t, route))
			cancel()
			if err != nil {
				t.Errorf("%s: %v", route, err)
				continue
			}
			if resp.GetModelName() != route && !strings.HasPrefix(resp.GetModelName(), route) {
				t.Errorf("%s: answered by model %q", route, resp.GetModelName())
			}
			if len(resp.GetOutputs()) == 0 {
				t.Errorf("%s: no outputs", route)
			}
			if strings.Contains(route, "ensemble") || route == "recommendations" {
				if got := md.Get(fanout.HeaderAnswered); len(got) == 0 || got[0] != answered(resp) || answered(resp) == "" {
					t.Errorf("%s: %s trailer %q, parameter %q: want the same members in both", route, fanout.HeaderAnswered, got, answered(resp))
				}
				// Each member's contribution, for maestro predict.
				scores := resp.GetParameters()[fanout.ParamMembers].GetStringParam()
				if n := len(strings.Split(answered(resp), ",")); strings.Count(scores, ";")+1 != n || strings.Count(scores, "=") != n {
					t.Errorf("%s: %s = %q for members %q", route, fanout.ParamMembers, scores, answered(resp))
				}
			}
		}
	})

	t.Run("standard REST clients reach every route", func(t *testing.T) {
		for _, route := range []string{"fraud", "fraud-ensemble", "churn", "recommendations"} {
			code, body := m.restInfer(t, route)
			if code != http.StatusOK {
				t.Errorf("REST %s: status %d: %v", route, code, body)
				continue
			}
			if outs, _ := body["outputs"].([]any); len(outs) == 0 {
				t.Errorf("REST %s: no outputs: %v", route, body)
			}
			if route == "fraud-ensemble" || route == "recommendations" {
				if restParam(body, fanout.ParamAnswered) == "" || restParam(body, fanout.ParamMembers) == "" {
					t.Errorf("REST %s: the ensemble did not run: %v", route, body["parameters"])
				}
			}
		}
	})

	t.Run("shadow gets its percentage and is compared", func(t *testing.T) {
		const calls = 2000
		var base0, sent0 uint64
		var compared0 uint64
		// Two refreshes from now, the counts include every call made so
		// far and the shadow copies they sent: earlier subtests' calls
		// must not count as this one's.
		m.mu.Lock()
		gen := m.gen
		m.mu.Unlock()
		m.await(t, waitLimit, "fresh counts", func(c Counts, r RouteStats) bool {
			if m.gen < gen+2 {
				return false
			}
			base0 = c["fraud"]["logistic"]
			if f := r["fraud"]; f != nil {
				sent0, compared0 = f.ShadowSent, f.ShadowCompared
			}
			return true
		})
		req := m.request(t, "fraud")
		ctx, cancel := context.WithTimeout(context.Background(), 5*waitLimit)
		defer cancel()
		for i := range calls {
			if _, _, err := m.infer(ctx, req); err != nil {
				t.Fatalf("fraud call %d: %v", i, err)
			}
		}
		// Shadow copies are sent as the primary answers and may land
		// after the client's response: wait until the shadow server has
		// served every copy the filter sent.
		var served, sent uint64
		m.await(t, waitLimit, "shadow copies served", func(c Counts, r RouteStats) bool {
			f := r["fraud"]
			if f == nil {
				return false
			}
			served, sent = c["fraud"]["logistic"]-base0, f.ShadowSent-sent0
			return sent > 0 && served >= sent && f.ShadowCompared > compared0
		})
		share := float64(served) / calls
		t.Logf("shadow server got %d of %d fraud calls (%.1f%%), filter sent %d", served, calls, 100*share, sent)
		if math.Abs(share-0.20) > 0.03 {
			t.Errorf("shadow share %.3f, want within 3 points of 0.20", share)
		}
		m.mu.Lock()
		f := *m.routes["fraud"]
		m.mu.Unlock()
		if f.ShadowRows == 0 || f.ShadowAgree > f.ShadowRows {
			t.Errorf("agreement not metered: %d of %d rows agree", f.ShadowAgree, f.ShadowRows)
		}
	})

	t.Run("a split edit moves the gateway's traffic", func(t *testing.T) {
		data, err := os.ReadFile(m.policy)
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`\{version: v1, weight: 90\}\n(\s*)- \{version: v2, weight: 10\}`)
		if !re.Match(data) {
			t.Fatal("the demo's fraud split is no longer 90/10")
		}
		edited := re.ReplaceAllString(string(data), "{version: v1, weight: 0}\n$1- {version: v2, weight: 100}")
		replaceFile(t, m.policy, edited)
		select {
		case err := <-m.reloads:
			if err != nil {
				t.Fatalf("reload: %v", err)
			}
		case <-time.After(waitLimit):
			t.Fatal("the edit was not reloaded")
		}
		// From the reload on, the gateway must follow within a second:
		// the first of 20 answers in a row from v2.
		reloaded := time.Now()
		req := m.request(t, "fraud")
		inRow := 0
		for inRow < 20 {
			if time.Since(reloaded) > time.Second {
				t.Fatalf("the gateway's traffic had not moved to v2 a second after the reload")
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, _, err := m.infer(ctx, req)
			cancel()
			if err != nil {
				t.Fatalf("fraud during the edit: %v", err)
			}
			if resp.GetParameters()[server.ServerParameter].GetStringParam() == "fraud-v2" {
				inRow++
			} else {
				inRow = 0
			}
		}
		t.Logf("the gateway's traffic moved %s after the reload", time.Since(reloaded))
	})

	t.Run("a control-plane restart drops no request", func(t *testing.T) {
		// Callers through both gateways run before, during and after the
		// restart; every call must succeed.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		calls, failed := 0, 0
		var failures []string
		record := func(err error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if err != nil {
				failed++
				if len(failures) < 5 {
					failures = append(failures, err.Error())
				}
			}
		}
		grpcReq, restRoute := m.request(t, "churn"), "fraud"
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, _, err := m.infer(ctx, grpcReq)
				cancel()
				record(err)
			}
		}()
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := m.restCall(restRoute)
				if err == nil && code != http.StatusOK {
					err = fmt.Errorf("REST %s: status %d: %v", restRoute, code, body)
				}
				record(err)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		err := m.started.RestartControlPlane(ctx)
		// The gateways reconnect with backoff; keep calling until both
		// have their ADS stream back (envoy_control_plane_connected_state).
		for _, gw := range m.started.Gateways {
			awaitConnected(t, gw.Admin)
		}
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("restart: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if failed > 0 || calls == 0 {
			t.Fatalf("%d of %d calls failed across the restart: %q", failed, calls, failures)
		}
		t.Logf("%d calls through the gateways across a control-plane restart, none failed", calls)
	})

	t.Run("ensemble members stopped: the rest answer, then quorum fails", func(t *testing.T) {
		req := m.request(t, "fraud-ensemble")
		m.server(t, "fraud", "logistic").Stop()
		// Until the gateway sees the member gone, it may still be asked;
		// every call must be answered (quorum 2 of 3 holds), and soon
		// without the stopped member.
		deadline := time.Now().Add(waitLimit)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			start := time.Now()
			resp, _, err := m.infer(ctx, req)
			cancel()
			if err != nil {
				t.Fatalf("with one member of three stopped (quorum 2), after %s: %v", time.Since(start), err)
			}
			got := answered(resp)
			if !strings.Contains(got, "logistic") && strings.Contains(got, "v1") && strings.Contains(got, "v2") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the stopped member still answers: %q", got)
			}
		}
		// The same servers answer REST: the ensemble holds there too.
		deadline = time.Now().Add(waitLimit)
		for {
			code, body := m.restInfer(t, "fraud-ensemble")
			if code != http.StatusOK {
				t.Fatalf("REST with one member of three stopped: status %d: %v", code, body)
			}
			got := restParam(body, fanout.ParamAnswered)
			if !strings.Contains(got, "logistic") && strings.Contains(got, "v1") && strings.Contains(got, "v2") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("REST: the stopped member still answers: %q", got)
			}
		}
		m.server(t, "fraud", "v2").Stop()
		deadline = time.Now().Add(waitLimit)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _, err := m.infer(ctx, req)
			cancel()
			if status.Code(err) == codes.Unavailable && strings.Contains(status.Convert(err).Message(), "quorum not met") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("with two members of three stopped, got %v, want UNAVAILABLE quorum not met", err)
			}
		}
		deadline = time.Now().Add(waitLimit)
		for {
			code, body := m.restInfer(t, "fraud-ensemble")
			msg, _ := body["error"].(string)
			if code == http.StatusServiceUnavailable && strings.Contains(msg, "quorum not met") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("REST with two members of three stopped: status %d %v, want 503 quorum not met", code, body)
			}
		}
		m.await(t, waitLimit, "quorum failures counted", func(_ Counts, r RouteStats) bool {
			e := r["fraud-ensemble"]
			return e != nil && e.QuorumFailures > 0
		})
	})
}

// answered is the fanout_answered response parameter: the members whose
// answers were combined.
func answered(resp *pb.ModelInferResponse) string {
	return resp.GetParameters()["fanout_answered"].GetStringParam()
}

// restInfer posts a standard REST inference request for route's model to
// the REST gateway and returns the status and decoded body.
func (m *demoMesh) restInfer(t *testing.T, route string) (int, map[string]any) {
	t.Helper()
	code, body, err := m.restCall(route)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

// restCall is restInfer for goroutines other than the test's: it returns
// its error.
func (m *demoMesh) restCall(route string) (int, map[string]any, error) {
	inputs := route
	if route == "fraud-ensemble" {
		inputs = "fraud"
	}
	d, err := demoRequest(m.models, inputs)
	if err != nil {
		return 0, nil, err
	}
	body, err := json.Marshal(d.body)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.rest+"/v2/models/"+route+"/infer", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("REST %s: %w", route, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("REST %s: status %s, body: %w", route, resp.Status, err)
	}
	return resp.StatusCode, out, nil
}

// restParam is a response parameter of a decoded REST answer.
func restParam(body map[string]any, key string) string {
	ps, _ := body["parameters"].(map[string]any)
	v, _ := ps[key].(string)
	return v
}

// awaitConnected waits until the gateway whose admin port is admin reports
// an ADS stream to the control plane.
func awaitConnected(t *testing.T, admin string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		resp, err := http.Get("http://" + admin + "/stats/prometheus")
		if err == nil {
			var b strings.Builder
			_, _ = io.Copy(&b, resp.Body)
			resp.Body.Close()
			if strings.Contains(b.String(), "envoy_control_plane_connected_state 1") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway admin %s: not connected to the control plane within %s", admin, waitLimit)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a bounded wait
	}
}
