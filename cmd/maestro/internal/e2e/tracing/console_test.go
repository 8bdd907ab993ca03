package tracing

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/cmd/maestro/internal/localmesh/meshtest"
	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
)

// spanStart is where the stdout exporter's JSON for a span begins.
var spanStart = regexp.MustCompile(`\{\s*"Name"\s*:`)

// listening is the line `maestro inference` prints once it serves.
var listening = regexp.MustCompile(`gRPC on (\S+), HTTP on (\S+),`)

const (
	binTraceHex = "4bf92f3577b34da6a3ce929d0e0e4736"
	// restSpan is the REST request's span: otelhttp names it after the
	// method and the matched route pattern.
	restSpan = "POST /v2/models/{model}/infer"
)

// buildMaestro builds the maestro binary into a temporary directory.
func buildMaestro(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "maestro")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/maestro")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/maestro: %v\n%s", err, out)
	}
	return bin
}

// printedSpan is one span as the stdout exporter prints it.
type printedSpan struct {
	Name        string
	SpanContext struct{ TraceID string }
	Resource    []struct {
		Key   string
		Value struct{ Value any }
	}
}

// received is what an exporter delivered: span name -> the trace IDs of
// the spans of that name, and the service.name of the resource.
type received struct {
	mu      sync.Mutex
	spans   map[string][]string
	service string
}

func (r *received) add(name, traceID, service string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.spans == nil {
		r.spans = map[string][]string{}
	}
	r.spans[name] = append(r.spans[name], traceID)
	if service != "" {
		r.service = service
	}
}

func (r *received) addOTLP(req *collectorpb.ExportTraceServiceRequest) {
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.add(s.GetName(), hex.EncodeToString(s.GetTraceId()), service)
			}
		}
	}
}

// otlpGRPC is an OTLP/gRPC collector on loopback.
type otlpGRPC struct {
	collectorpb.UnimplementedTraceServiceServer
	got *received
}

func (c otlpGRPC) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	c.got.addOTLP(req)
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func startOTLPGRPC(t *testing.T, got *received) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(srv, otlpGRPC{got: got})
	go func() { _ = srv.Serve(lis) }() // returns when Stop closes lis
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// startOTLPHTTP is an OTLP/HTTP (protobuf) collector on loopback.
func startOTLPHTTP(t *testing.T, got *received) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req collectorpb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if r.URL.Path != "/v1/traces" || err != nil {
			http.Error(w, fmt.Sprintf("path %s: %v", r.URL.Path, err), http.StatusBadRequest)
			return
		}
		got.addOTLP(&req)
		w.Header().Set("content-type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
		_, _ = w.Write(out) // a failed write fails the exporter, which the test sees
	})}
	go func() { _ = srv.Serve(lis) }() // http.ErrServerClosed once Close runs
	t.Cleanup(func() { srv.Close() })
	return lis.Addr().String()
}

// TestBinaryExportsRequestSpans runs the real `maestro inference` with the
// exporter settings the README gives a user and expects the spans of one
// REST request, in the caller's trace and under OTEL_SERVICE_NAME, to reach
// the console or an OTLP collector by the time the process exits on
// SIGTERM.
func TestBinaryExportsRequestSpans(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the maestro binary")
	}
	root := inferencetest.ModuleRoot(t)
	bin := buildMaestro(t, root)
	tests := []struct {
		name string
		env  func(t *testing.T, got *received) []string
	}{
		{"console", func(*testing.T, *received) []string {
			return []string{"OTEL_TRACES_EXPORTER=console"}
		}},
		{"otlp-grpc", func(t *testing.T, got *received) []string {
			return []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
				"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + startOTLPGRPC(t, got)}
		}},
		{"otlp-http", func(t *testing.T, got *received) []string {
			return []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_ENDPOINT=http://" + startOTLPHTTP(t, got)}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := &received{}
			env := append(tc.env(t, got), "OTEL_SERVICE_NAME=binary-test")
			stdout := runInferenceOnce(t, bin, root, env)
			if tc.name == "console" {
				dec := json.NewDecoder(bytes.NewReader(stdout))
				for dec.More() {
					var s printedSpan
					if err := dec.Decode(&s); err != nil {
						t.Fatalf("stdout after the listening line is not a stream of JSON spans: %v\n%s", err, stdout)
					}
					service := ""
					for _, kv := range s.Resource {
						if kv.Key == "service.name" {
							service = fmt.Sprint(kv.Value.Value)
						}
					}
					got.add(s.Name, s.SpanContext.TraceID, service)
				}
			}
			got.mu.Lock()
			defer got.mu.Unlock()
			for _, name := range []string{restSpan, "inference.predict"} {
				if ids := got.spans[name]; !slices.Contains(ids, binTraceHex) {
					t.Errorf("span %q exported in traces %q, want %s; exported spans: %v", name, ids, binTraceHex, got.spans)
				}
			}
			for name := range got.spans {
				documentedNames(t, name)
			}
			if got.service != "binary-test" {
				t.Errorf("service.name %q, want OTEL_SERVICE_NAME's binary-test", got.service)
			}
		})
	}
}

// runInferenceOnce starts `maestro inference` with env, makes one traced
// REST request, stops it with SIGTERM and returns what it printed after
// its listening line.
func runInferenceOnce(t *testing.T, bin, root string, env []string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	p := startMaestro(t, ctx, bin, env, false, "inference", "--models", filepath.Join(root, "examples", "models"),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "warn")
	cmd, stderr, lines := p.cmd, &p.other, p.piped

	first, err := lines.ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v; stderr:\n%s", err, stderr.String())
	}
	m := listening.FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("first line %q does not say where it listens", first)
	}
	rest := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(lines)
		rest <- b
	}()

	body := `{"inputs":[{"name":"features","datatype":"FP32","shape":[1,30],"data":[` +
		strings.TrimSuffix(strings.Repeat("0,", 30), ",") + `]}]}`
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+m[2]+"/v2/models/fraud/infer", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("traceparent", "00-"+binTraceHex+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("infer: %d %s", resp.StatusCode, answer)
	}

	// SIGTERM is how a deployment stops it; the exit must flush the batch.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var printed []byte
	select {
	case printed = <-rest:
	case <-ctx.Done():
		t.Fatalf("maestro inference did not exit after SIGTERM; stderr:\n%s", stderr.String())
	}
	p.waited = true
	if err := cmd.Wait(); err != nil {
		t.Fatalf("maestro inference exited with %v; stderr:\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "flush traces") {
		t.Errorf("flushing traces failed on exit:\n%s", stderr.String())
	}
	return printed
}

// TestUpExportsMeshSpans runs the real `maestro up` with the console
// exporter: its control plane's translation and push and its inference
// servers' request spans are printed, under maestro-up's service name,
// by the time it exits on SIGTERM.
func TestUpExportsMeshSpans(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the maestro binary")
	}
	root := inferencetest.ModuleRoot(t)
	bin := buildMaestro(t, root)
	dir := t.TempDir()
	port := meshtest.FreePorts(t, 1)[0]
	policy := filepath.Join(dir, "policy.yaml")
	tracedPolicy(dir, port, 5*time.Second).Write(t, policy)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	p := startMaestro(t, ctx, bin, []string{"OTEL_TRACES_EXPORTER=console"}, false, "up", "--dir", dir, "-f", policy,
		"--models", filepath.Join(root, "examples", "models"), "--xds-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	cmd, stderr, lines := p.cmd, &p.other, p.piped
	for {
		line, err := lines.ReadString('\n')
		if err != nil {
			t.Fatalf("maestro up stopped before saying it is up: %v; stderr:\n%s", err, stderr.String())
		}
		if strings.Contains(line, "Ctrl-C stops everything") {
			break
		}
	}
	rest := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(lines)
		rest <- b
	}()

	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rctx := metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+binTraceHex+"-00f067aa0ba902b7-01")
	if _, err := pb.NewGRPCInferenceServiceClient(conn).ModelInfer(rctx, fraudRequest(1)); err != nil {
		t.Fatalf("call the mesh's fraud server: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var printed []byte
	select {
	case printed = <-rest:
	case <-ctx.Done():
		t.Fatalf("maestro up did not exit after SIGTERM; stderr:\n%s", stderr.String())
	}
	p.waited = true
	if err := cmd.Wait(); err != nil {
		t.Fatalf("maestro up exited with %v; stderr:\n%s", err, stderr.String())
	}

	// The live request counts share stdout with the spans: decode each
	// JSON object that starts a span.
	got := &received{}
	for _, loc := range spanStart.FindAllIndex(printed, -1) {
		var s printedSpan
		if err := json.NewDecoder(bytes.NewReader(printed[loc[0]:])).Decode(&s); err != nil {
			t.Fatalf("span at byte %d does not decode: %v", loc[0], err)
		}
		service := ""
		for _, kv := range s.Resource {
			if kv.Key == "service.name" {
				service = fmt.Sprint(kv.Value.Value)
			}
		}
		got.add(s.Name, s.SpanContext.TraceID, service)
	}
	for _, name := range []string{"controlplane.translate", "controlplane.push"} {
		if _, ok := got.spans[name]; !ok {
			t.Errorf("no %q span printed; printed: %v", name, got.spans)
		}
	}
	for _, name := range []string{rpcName, "inference.predict"} {
		if ids := got.spans[name]; !slices.Contains(ids, binTraceHex) {
			t.Errorf("span %q printed in traces %q, want the caller's %s; printed: %v", name, ids, binTraceHex, got.spans)
		}
	}
	if got.service != "maestro-up" {
		t.Errorf("service.name %q, want maestro-up", got.service)
	}
}

// TestControlplaneExportsReloadSpans runs the real `maestro controlplane`
// with the console exporter: the first load's translation and push are
// printed under its service name by the time it exits on SIGTERM.
func TestControlplaneExportsReloadSpans(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the maestro binary")
	}
	root := inferencetest.ModuleRoot(t)
	bin := buildMaestro(t, root)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	tracedPolicy(dir, meshtest.FreePorts(t, 1)[0], 5*time.Second).Write(t, policy)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	p := startMaestro(t, ctx, bin, []string{"OTEL_TRACES_EXPORTER=console"}, true, "controlplane", "-f", policy, "--insecure",
		"--xds-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	cmd, stdout := p.cmd, &p.other
	// The log says when the first load was applied; the rest of stderr is
	// drained so the process never blocks on it.
	logs := p.piped
	var logged strings.Builder
	for {
		line, err := logs.ReadString('\n')
		logged.WriteString(line)
		if err != nil {
			t.Fatalf("maestro controlplane stopped before applying the policy: %v; stderr:\n%s", err, logged.String())
		}
		if strings.Contains(line, "policy applied") {
			break
		}
	}
	drained := make(chan struct{})
	go func() {
		_, _ = io.Copy(&logged, logs)
		close(drained)
	}()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-drained:
	case <-ctx.Done():
		t.Fatal("maestro controlplane did not exit after SIGTERM")
	}
	p.waited = true
	if err := cmd.Wait(); err != nil {
		t.Fatalf("maestro controlplane exited with %v; stderr:\n%s", err, logged.String())
	}
	got := &received{}
	dec := json.NewDecoder(stdout)
	for dec.More() {
		var s printedSpan
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("stdout is not a stream of JSON spans: %v", err)
		}
		service := ""
		for _, kv := range s.Resource {
			if kv.Key == "service.name" {
				service = fmt.Sprint(kv.Value.Value)
			}
		}
		got.add(s.Name, s.SpanContext.TraceID, service)
	}
	joined := false
	for _, id := range got.spans["controlplane.push"] {
		joined = joined || slices.Contains(got.spans["controlplane.translate"], id)
	}
	if !joined {
		t.Errorf("want a controlplane.push in the trace of a controlplane.translate; printed: %v", got.spans)
	}
	if got.service != "maestro-controlplane" {
		t.Errorf("service.name %q, want maestro-controlplane", got.service)
	}
}

// maestroProc is a maestro process under test: one output stream piped to
// the test, the other collected.
type maestroProc struct {
	cmd    *exec.Cmd
	piped  *bufio.Reader
	other  bytes.Buffer
	waited bool // set once the test has waited for the process itself
}

// startMaestro starts bin with args and env added to the environment,
// piping stdout (stderr with pipeStderr). The process is killed at cleanup
// unless the test waited for it.
func startMaestro(t *testing.T, ctx context.Context, bin string, env []string, pipeStderr bool, args ...string) *maestroProc {
	t.Helper()
	p := &maestroProc{cmd: exec.CommandContext(ctx, bin, args...)}
	p.cmd.Env = append(os.Environ(), env...)
	var pipe io.ReadCloser
	var err error
	if pipeStderr {
		p.cmd.Stdout = &p.other
		pipe, err = p.cmd.StderrPipe()
	} else {
		p.cmd.Stderr = &p.other
		pipe, err = p.cmd.StdoutPipe()
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.waited {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	p.piped = bufio.NewReader(pipe)
	return p
}
