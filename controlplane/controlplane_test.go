package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	dto "github.com/prometheus/client_model/go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/maestro-ml/maestro/internal/cptest"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

const waitLimit = 10 * time.Second

type reloadEvent struct {
	version string
	err     error
}

type running struct {
	addrs   Addrs
	reloads chan reloadEvent
	path    string
	// stopped is how long Run took to return once cancelled.
	stopped time.Duration
}

// shutdownLimit bounds how long Run may take to stop: the admin server's
// drain is the longest step.
const shutdownLimit = shutdownTimeout + 5*time.Second

func backends(w1, w2 uint32) []cptest.Backend {
	return []cptest.Backend{
		{Cluster: "fraud.v1", Host: "127.0.0.1", Port: 9001, Weight: w1},
		{Cluster: "fraud.v2", Host: "127.0.0.1", Port: 9002, Weight: w2},
	}
}

func runPlane(t *testing.T) *running {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mesh.json")
	if err := cptest.WriteMesh(path, cptest.SplitMesh(backends(90, 10)...)); err != nil {
		t.Fatal(err)
	}
	return runPlaneWith(t, path, Config{Load: cptest.LoadJSON, Debounce: 10 * time.Millisecond})
}

// runPlaneWith runs a control plane on path with cfg's loader and
// debounce, on loopback ports, until the test ends; the test fails if it
// then takes more than shutdownLimit to stop.
func runPlaneWith(t *testing.T, path string, cfg Config) *running {
	t.Helper()
	r := &running{reloads: make(chan reloadEvent, 1000), path: path}
	ready := make(chan Addrs, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg.Paths, cfg.Insecure = []string{path}, true
	cfg.XDSAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Registry, cfg.SettleAfter = telemetry.NewRegistry(), 20*time.Millisecond
	cfg.Ready = func(a Addrs) { ready <- a }
	also := cfg.OnReload
	cfg.OnReload = func(v string, err error) {
		if also != nil {
			also(v, err)
		}
		r.reloads <- reloadEvent{v, err}
	}
	go func() { done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
			r.stopped = time.Since(start)
			t.Logf("figure: stopped %s after cancel", r.stopped.Round(time.Millisecond))
		case <-time.After(shutdownLimit):
			t.Errorf("control plane still running %s after being told to stop", shutdownLimit)
		}
	})
	select {
	case r.addrs = <-ready:
	case err := <-done:
		t.Fatalf("run ended early: %v", err)
	case <-time.After(waitLimit):
		t.Fatal("control plane not ready")
	}
	return r
}

func (r *running) waitReload(t *testing.T) reloadEvent {
	t.Helper()
	select {
	case ev := <-r.reloads:
		return ev
	case <-time.After(waitLimit):
		t.Fatal("no reload")
	}
	return reloadEvent{}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

func TestRunReloadsAndKeepsLastGood(t *testing.T) {
	r := runPlane(t)
	conn, err := grpc.NewClient(r.addrs.XDS.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{"maestro.role": "proxyless"})
	if err := ads.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "client-1", Metadata: md}, TypeUrl: resource.ListenerType}); err != nil {
		t.Fatal(err)
	}
	first, err := ads.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(first.GetResources()) != 1 {
		t.Fatalf("got %d listeners, want the API listener", len(first.GetResources()))
	}
	ack := func(resp *discoveryv3.DiscoveryResponse) {
		t.Helper()
		if err := ads.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ListenerType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	ack(first)

	// A broken edit is rejected, counted, and pushes nothing.
	if err := cptest.ReplaceFile(r.path, []byte(`{"groups": [`)); err != nil {
		t.Fatal(err)
	}
	if ev := r.waitReload(t); ev.err == nil {
		t.Fatal("broken edit was applied")
	}
	_, metrics := get(t, "http://"+r.addrs.Admin.String()+"/metrics")
	for _, want := range []string{
		"maestro_controlplane_policy_errors_total 1",
		`maestro_controlplane_reloads_total{result="invalid"} 1`,
		`maestro_controlplane_connected_nodes 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// A valid edit then arrives as the very next response: nothing was
	// pushed for the broken one.
	if err := cptest.WriteMesh(r.path, cptest.SplitMesh(backends(50, 50)...)); err != nil {
		t.Fatal(err)
	}
	ev := r.waitReload(t)
	if ev.err != nil {
		t.Fatalf("valid edit rejected: %v", ev.err)
	}
	next, err := ads.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if next.GetVersionInfo() == first.GetVersionInfo() {
		t.Fatalf("weight change kept version %q", next.GetVersionInfo())
	}
	ack(next)

	code, body := get(t, "http://"+r.addrs.Admin.String()+"/readyz")
	if code != http.StatusOK {
		t.Errorf("/readyz = %d %s", code, body)
	}
	_, body = get(t, "http://"+r.addrs.Admin.String()+"/debug/status")
	var st status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Version != ev.version || len(st.Nodes) != 1 || st.Nodes[0].ID != "client-1" || st.Nodes[0].Group != "proxyless" {
		t.Errorf("status = %+v, want version %s and node client-1 in group proxyless", st, ev.version)
	}
}

func TestRunRejectsBadStart(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "mesh.json")
	if err := os.WriteFile(bad, []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		cfg  Config
		want error
	}{
		"plaintext without --insecure": {Config{Paths: []string{bad}, Load: cptest.LoadJSON, Registry: telemetry.NewRegistry()}, ErrInsecure},
		"invalid first load":           {Config{Paths: []string{bad}, Load: cptest.LoadJSON, Registry: telemetry.NewRegistry(), Insecure: true, XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"}, nil},
		"no loader":                    {Config{Paths: []string{bad}, Registry: telemetry.NewRegistry(), Insecure: true}, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := Run(context.Background(), tc.cfg)
			if err == nil {
				t.Fatal("run succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestRemovedClusterIsSettledAfterMakeBeforeBreak removes a service
// version: the routes stop using its cluster first (a listener push with
// the cluster still served), and the cluster goes in a later push, once
// the change has settled.
func TestRemovedClusterIsSettledAfterMakeBeforeBreak(t *testing.T) {
	r := runPlane(t)
	conn, err := grpc.NewClient(r.addrs.XDS.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{"maestro.role": "proxyless"})
	for i, typ := range []string{resource.ClusterType, resource.ListenerType} {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = &corev3.Node{Id: "client-1", Metadata: md}
		}
		if err := ads.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	// next receives a response and ACKs it at once, so the following push
	// finds a watch open; it returns the type and, for clusters, names.
	next := func() (string, []string) {
		t.Helper()
		resp, err := ads.Recv()
		if err != nil {
			t.Fatal(err)
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if err := ads.Send(ack); err != nil {
			t.Fatal(err)
		}
		var names []string
		if resp.GetTypeUrl() == resource.ClusterType {
			for _, a := range resp.GetResources() {
				var c clusterv3.Cluster
				if err := a.UnmarshalTo(&c); err != nil {
					t.Fatal(err)
				}
				names = append(names, c.GetName())
			}
			slices.Sort(names)
		}
		return resp.GetTypeUrl(), names
	}
	for range 2 { // initial clusters and listener, in either order
		if typ, names := next(); typ == resource.ClusterType && !slices.Equal(names, []string{"fraud.v1", "fraud.v2"}) {
			t.Fatalf("initial clusters %v", names)
		}
	}
	if err := cptest.WriteMesh(r.path, cptest.SplitMesh(backends(100, 0)[:1]...)); err != nil {
		t.Fatal(err)
	}
	if ev := r.waitReload(t); ev.err != nil {
		t.Fatal(ev.err)
	}
	if typ, names := next(); typ != resource.ListenerType {
		t.Fatalf("first push after removing v2 is %s %v; want the listener whose routes no longer use v2", typ, names)
	}
	if typ, names := next(); typ != resource.ClusterType || !slices.Equal(names, []string{"fraud.v1"}) {
		t.Fatalf("settle push is %s %v, want clusters [fraud.v1]", typ, names)
	}
}

// TestReloadRecordsTranslateSpans checks the translation span of a good
// and of a rejected reload.
func TestReloadRecordsTranslateSpans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.json")
	if err := cptest.WriteMesh(path, cptest.SplitMesh(backends(90, 10)...)); err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	cfg := Config{Paths: []string{path}, Load: cptest.LoadJSON, Insecure: true, Registry: telemetry.NewRegistry(),
		Tracer: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))}
	loadThenBreak(t, cfg, path)
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name()+":"+s.Status().Code.String())
	}
	want := []string{"controlplane.push:Unset", "controlplane.translate:Unset", "controlplane.translate:Error"}
	if !slices.Equal(names, want) {
		t.Errorf("spans %v, want %v", names, want)
	}
}

// TestRefreshDoesNotRecountABrokenPolicy: the periodic refresh of a policy
// still broken the same way neither logs nor counts it again.
func TestRefreshDoesNotRecountABrokenPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.json")
	if err := cptest.WriteMesh(path, cptest.SplitMesh(backends(90, 10)...)); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Paths: []string{path}, Load: cptest.LoadJSON, Insecure: true, Registry: telemetry.NewRegistry()}
	cp := loadThenBreak(t, cfg, path)
	cp.refresh(context.Background())
	cp.refresh(context.Background())
	var m dto.Metric
	if err := cp.m.policyErrors.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Errorf("policy_errors_total = %v after one broken edit and two refreshes, want 1", got)
	}
}

// loadThenBreak starts a plane on cfg, loads the valid mesh at path, then
// overwrites path with broken JSON and reloads: the plane keeps serving the
// first mesh and has seen one failed reload.
func loadThenBreak(t *testing.T, cfg Config, path string) *plane {
	t.Helper()
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	cp, err := newPlane(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.reload(context.Background()); err == nil {
		t.Fatal("broken mesh loaded")
	}
	return cp
}
