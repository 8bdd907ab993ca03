package tracing

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds"

	"github.com/maestro-ml/maestro/cmd/maestro/internal/localmesh"
	"github.com/maestro-ml/maestro/cmd/maestro/internal/localmesh/meshtest"
	"github.com/maestro-ml/maestro/controlplane/bootstrap"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
)

// tracedPolicy routes model fraud to one local inference server on port;
// the route's timeout is changed to cause a reload.
func tracedPolicy(dir string, port int, timeout time.Duration) meshtest.Fraud {
	return meshtest.Fraud{Name: "traced", CADir: filepath.Join(dir, "ca"), V1Port: port, Timeout: timeout}
}

const (
	rpcName      = "inference.GRPCInferenceService/ModelInfer"
	meshDeadline = 30 * time.Second
)

type reload struct {
	version string
	err     error
}

// tracedMesh is a running mesh whose every component records into rec.
type tracedMesh struct {
	recorded
	started  localmesh.Started
	policy   func(timeoutMs int)
	reloads  chan reload
	stop     func() // stops the mesh, ending every span
	clientTP trace.TracerProvider
}

// startTracedMesh runs `maestro up`'s mesh with tracing into memory.
// With demo set, the mesh sends its own demo traffic and demo signals each
// ended client span.
func startTracedMesh(t *testing.T, demo chan struct{}) *tracedMesh {
	t.Helper()
	var rec recorded
	if demo != nil {
		rec = newRecorded(t, endedNotifier{kind: trace.SpanKindClient, ended: demo})
	} else {
		rec = newRecorded(t)
	}
	m := &tracedMesh{recorded: rec, reloads: make(chan reload, 16)}
	m.clientTP = m.tracing.Provider
	dir := t.TempDir()
	port := meshtest.FreePorts(t, 1)[0]
	path := filepath.Join(dir, "policy.yaml")
	m.policy = func(timeoutMs int) {
		tracedPolicy(dir, port, time.Duration(timeoutMs)*time.Millisecond).Write(t, path)
	}
	m.policy(5000)
	models := slowBatchingModels(t, filepath.Join(dir, "models"))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan localmesh.Started, 1)
	done := make(chan error, 1)
	go func() {
		done <- localmesh.Run(ctx, localmesh.Config{Dir: dir, Policy: path, Models: models,
			XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Tracing: m.tracing,
			DemoTraffic: demo != nil, Rate: 50,
			OnReady: func(s localmesh.Started) { ready <- s },
			OnReload: func(version string, err error) {
				select {
				case m.reloads <- reload{version, err}:
				default: // the test reads the reload it caused; extra ones may go
				}
			}})
	}()
	stopped := false
	m.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("mesh: %v", err)
			}
		case <-time.After(meshDeadline):
			t.Error("mesh did not stop within 30s")
		}
	}
	t.Cleanup(m.stop)
	select {
	case m.started = <-ready:
	case err := <-done:
		stopped = true
		t.Fatalf("mesh did not start: %v", err)
	case <-time.After(meshDeadline):
		t.Fatal("mesh not ready within 30s")
	}
	return m
}

// slowBatchingModels copies the demo fraud model into dir with a queue
// delay long enough that concurrent calls merge into batches however
// loaded the machine is, and a batch size that holds a whole round.
func slowBatchingModels(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(inferencetest.ModuleRoot(t), "examples", "models", "fraud")
	dst := filepath.Join(dir, "fraud")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dst, "config.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, edit := range [][2]string{
		{"max_queue_delay_microseconds: 200\n", "max_queue_delay_microseconds: 20000\n"},
		{"max_batch_size: 1024\n", fmt.Sprintf("max_batch_size: %d\n", perRound*callRows)},
		{"  preferred_batch_size: [16, 64]\n", ""},
	} {
		if !bytes.Contains(cfg, []byte(edit[0])) {
			t.Fatalf("%s has no %q to change", cfgPath, edit[0])
		}
		cfg = bytes.Replace(cfg, []byte(edit[0]), []byte(edit[1]), 1)
	}
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Each round sends perRound calls of callRows rows at once. Every call
// evaluates for long enough that the others of its round arrive meanwhile,
// even on a machine whose other core is taken, and the batch may grow to
// hold them all.
const perRound, callRows = 16, 500

// client is a proxyless gRPC client of xds:///fraud whose calls are traced
// by the otelgrpc client handler.
func (m *tracedMesh) client(t *testing.T) pb.GRPCInferenceServiceClient {
	t.Helper()
	boot, err := bootstrap.GRPC(bootstrap.Config{NodeID: "traced-client", Role: model.RoleProxyless, XDSAddr: m.started.XDS})
	if err != nil {
		t.Fatal(err)
	}
	resolver, err := xds.NewXDSResolverWithConfigForTesting(boot)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///fraud", grpc.WithResolvers(resolver),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(m.clientTP),
			otelgrpc.WithPropagators(m.tracing.Propagator))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewGRPCInferenceServiceClient(conn)
}

func fraudRequest(rows int) *pb.ModelInferRequest {
	return &pb.ModelInferRequest{ModelName: "fraud", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "features", Datatype: "FP32", Shape: []int64{int64(rows), 30},
		Contents: &pb.InferTensorContents{Fp32Contents: make([]float32, rows*30)},
	}}}
}

// tracedCall makes one call under a fresh root span and returns the
// root's trace and span IDs.
func tracedCall(ctx context.Context, tp trace.TracerProvider, c pb.GRPCInferenceServiceClient, rows int) (trace.SpanContext, error) {
	ctx, root := tp.Tracer("maestro-tracing-test").Start(ctx, "client.request", trace.WithSpanKind(trace.SpanKindInternal))
	defer root.End()
	_, err := c.ModelInfer(ctx, fraudRequest(rows))
	return root.SpanContext(), err
}

// TestOneTraceFromProxylessClientToModel: a call through the control
// plane's xds:/// routing is one trace from the client's span down to the
// model evaluation, queueing and batching on the inference server.
func TestOneTraceFromProxylessClientToModel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a mesh")
	}
	m := startTracedMesh(t, nil)
	c := m.client(t)
	ctx, cancel := context.WithTimeout(t.Context(), meshDeadline)
	defer cancel()

	first, err := tracedCall(ctx, m.clientTP, c, 1)
	if err != nil {
		t.Fatalf("call through xds: %v", err)
	}
	// Concurrent calls queue behind each other in the fraud model's
	// dynamic batcher while one of them evaluates. Whether a round
	// overlaps is still up to the scheduler, so rounds go on until a merged
	// batch was traced, bounded by a count and by the mesh deadline. The
	// batcher's own tests pin merging deterministically; this one shows
	// the spans join the callers' traces.
	var roots []trace.SpanContext
	const rounds = 1000
	ran := 0
	for ; ran < rounds && ctx.Err() == nil; ran++ {
		got := make([]trace.SpanContext, perRound)
		g, gctx := errgroup.WithContext(ctx)
		for i := range perRound {
			g.Go(func() error {
				sc, err := tracedCall(gctx, m.clientTP, c, callRows)
				got[i] = sc
				return err
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatalf("concurrent calls: %v", err)
		}
		roots = append(roots, got...)
		if len(spans(m.rec.Ended()).named("inference.batch", trace.SpanKindUnspecified)) > 0 {
			ran++
			break
		}
	}
	m.stop() // drains the servers, so every span has ended

	all := spans(m.rec.Ended())
	tr := all.inTrace(first.TraceID())
	root := tr.one(t, "client.request", trace.SpanKindInternal)
	clientRPC := tr.one(t, rpcName, trace.SpanKindClient)
	serverRPC := tr.one(t, rpcName, trace.SpanKindServer)
	predict := tr.one(t, "inference.predict", trace.SpanKindUnspecified)
	childOf(t, clientRPC, root)
	childOf(t, serverRPC, clientRPC)
	childOf(t, predict, serverRPC)
	if got := attr(predict, "inference.model"); got != "fraud" {
		t.Errorf("inference.predict model = %q, want fraud", got)
	}
	if got := attr(predict, "inference.version"); got != "1" {
		t.Errorf("inference.predict version = %q, want 1 (the route's v1)", got)
	}

	documented(t, all, "client.request")

	// Every queue span sits in its caller's trace under that caller's
	// model evaluation; every batch links the evaluations it merged.
	clientTraces := map[trace.TraceID]bool{first.TraceID(): true}
	for _, r := range roots {
		clientTraces[r.TraceID()] = true
	}
	queues := all.named("inference.queue", trace.SpanKindUnspecified)
	batches := all.named("inference.batch", trace.SpanKindUnspecified)
	switch {
	case (len(queues) == 0 || len(batches) == 0) && runtime.GOMAXPROCS(0) == 1:
		// With one P a caller alone in the batcher evaluates its own
		// request at once and runs to the end before the next call is
		// read, so calls rarely overlap and nothing need queue; the spans
		// that do appear are still checked below.
		t.Logf("GOMAXPROCS=1: %d rounds of %d calls traced %d queue and %d batch spans; merging is checked with two or more Ps",
			ran, perRound, len(queues), len(batches))
	case len(queues) == 0 || len(batches) == 0:
		t.Fatalf("%d rounds of %d concurrent calls traced %d queue and %d batch spans; want some of each",
			ran, perRound, len(queues), len(batches))
	}
	t.Logf("%d calls traced %d queue and %d batch spans", len(roots)+1, len(queues), len(batches))
	for _, q := range queues {
		if !clientTraces[q.SpanContext().TraceID()] {
			t.Errorf("inference.queue in trace %s, which no client started", q.SpanContext().TraceID())
			continue
		}
		parent := all.inTrace(q.SpanContext().TraceID()).byID(q.Parent().SpanID())
		if parent == nil || parent.Name() != "inference.predict" {
			t.Errorf("inference.queue's parent is %v, want the caller's inference.predict", parent)
		}
	}
	for _, b := range batches {
		if len(b.Links()) < 2 {
			t.Errorf("inference.batch merged %s requests, links %d", attr(b, "inference.requests"), len(b.Links()))
		}
		for _, l := range b.Links() {
			id := l.SpanContext.TraceID()
			if !clientTraces[id] {
				t.Errorf("inference.batch links trace %s, which no client started", id)
				continue
			}
			if p := all.inTrace(id).byID(l.SpanContext.SpanID()); p == nil || p.Name() != "inference.predict" {
				t.Errorf("inference.batch links %v, want a caller's inference.predict", p)
			}
		}
		if !clientTraces[b.SpanContext().TraceID()] {
			t.Errorf("inference.batch in trace %s, which no client started", b.SpanContext().TraceID())
		}
	}
}

// TestReloadTracesTranslateAndPush: a policy edit the control plane applies
// is one trace, its push of the new snapshots under the translation.
func TestReloadTracesTranslateAndPush(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a mesh")
	}
	m := startTracedMesh(t, nil)
	initial := spans(m.rec.Ended()).named("controlplane.translate", trace.SpanKindUnspecified)
	if len(initial) == 0 {
		t.Fatalf("the first load traced no controlplane.translate among:\n%s", spans(m.rec.Ended()))
	}
	before := attr(initial[0], "maestro.version")
	if before == "" {
		t.Fatal("the first controlplane.translate has no maestro.version")
	}

	m.policy(2500) // a new route timeout: new route configuration
	deadline := time.After(meshDeadline)
	var version string
	for version == "" {
		select {
		case r := <-m.reloads:
			if r.err == nil && r.version != before {
				version = r.version
			}
		case <-deadline:
			t.Fatal("the policy edit was not applied within 30s")
		}
	}
	m.stop()

	all := spans(m.rec.Ended())
	var translate spans
	for _, s := range all.named("controlplane.translate", trace.SpanKindUnspecified) {
		if attr(s, "maestro.version") == version {
			translate = append(translate, s)
		}
	}
	if len(translate) == 0 {
		t.Fatalf("no controlplane.translate with maestro.version=%s among:\n%s", version, all)
	}
	tr := translate[0]
	if tr.Parent().IsValid() {
		t.Errorf("the reload's translate span has parent %s, want a trace of its own", tr.Parent().SpanID())
	}
	push := all.inTrace(tr.SpanContext().TraceID()).one(t, "controlplane.push", trace.SpanKindUnspecified)
	childOf(t, push, tr)
	if got := attr(push, "maestro.version"); got != version {
		t.Errorf("controlplane.push version %q, want %q", got, version)
	}
	documented(t, all)
	if got := attr(push, "maestro.groups_pushed"); got == "" || got == "0" {
		t.Errorf("controlplane.push pushed %q groups for a changed route, want at least 1", got)
	}
}

// TestDemoTrafficIsTraced: `maestro up --demo-traffic` calls through its
// proxyless clients start traces that reach the server the routing chose.
func TestDemoTrafficIsTraced(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a mesh")
	}
	demo := make(chan struct{}, 1)
	m := startTracedMesh(t, demo)
	select {
	case <-demo:
	case <-time.After(meshDeadline):
		t.Fatal("no demo call traced within 30s")
	}
	m.stop()
	all := spans(m.rec.Ended())
	// A call cut short by the shutdown has no server side; the first
	// answered one must.
	var c sdktrace.ReadOnlySpan
	for _, s := range all.named(rpcName, trace.SpanKindClient) {
		if s.Status().Code != codes.Error {
			c = s
			break
		}
	}
	if c == nil {
		t.Fatalf("no answered demo call among:\n%s", all)
	}
	if c.Parent().IsValid() {
		t.Errorf("a demo call's client span has parent %s, want the root of its trace", c.Parent().SpanID())
	}
	childOf(t, all.inTrace(c.SpanContext().TraceID()).one(t, rpcName, trace.SpanKindServer), c)
}
