package tracing

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/inference/inferencetest"
)

// listening is the line `maestro inference` prints once it serves.
var listening = regexp.MustCompile(`gRPC on (\S+), HTTP on (\S+),`)

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

// TestConsoleExporterPrintsRequestSpans runs the real binary with
// OTEL_TRACES_EXPORTER=console, as the README tells a user to, and expects
// the spans of one REST request on its standard output, in the caller's
// trace, flushed by the time the process exits.
func TestConsoleExporterPrintsRequestSpans(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the maestro binary")
	}
	root := inferencetest.ModuleRoot(t)
	bin := buildMaestro(t, root)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "inference", "--models", filepath.Join(root, "examples", "models"),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=console", "OTEL_SERVICE_NAME=console-test")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})

	// The first line says where it listens; the rest of stdout is spans.
	lines := bufio.NewReader(out)
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

	const traceHex = "4bf92f3577b34da6a3ce929d0e0e4736"
	body := `{"inputs":[{"name":"features","datatype":"FP32","shape":[1,30],"data":[` +
		strings.TrimSuffix(strings.Repeat("0,", 30), ",") + `]}]}`
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+m[2]+"/v2/models/fraud/infer", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("traceparent", "00-"+traceHex+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("infer: %d %s", resp.StatusCode, answer)
	}

	// SIGTERM is how a deployment stops it: the exit flushes the batch.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var printed []byte
	select {
	case printed = <-rest:
	case <-ctx.Done():
		t.Fatalf("maestro inference did not exit after SIGTERM; stderr:\n%s", stderr.String())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("maestro inference exited with %v; stderr:\n%s", err, stderr.String())
	}

	got := map[string]string{} // span name -> trace ID
	service := ""
	dec := json.NewDecoder(bytes.NewReader(printed))
	for dec.More() {
		var span struct {
			Name        string
			SpanContext struct{ TraceID string }
			Resource    []struct {
				Key   string
				Value struct{ Value any }
			}
		}
		if err := dec.Decode(&span); err != nil {
			t.Fatalf("stdout after the listening line is not a stream of JSON spans: %v\n%s", err, printed)
		}
		got[span.Name] = span.SpanContext.TraceID
		for _, kv := range span.Resource {
			if kv.Key == "service.name" {
				service = fmt.Sprint(kv.Value.Value)
			}
		}
	}
	for _, name := range []string{"POST /v2/models/{model}/infer", "inference.predict"} {
		if id, ok := got[name]; !ok || id != traceHex {
			t.Errorf("span %q printed in trace %q, want %s; printed spans: %v", name, id, traceHex, got)
		}
	}
	if service != "console-test" {
		t.Errorf("service.name %q, want OTEL_SERVICE_NAME's console-test", service)
	}
}
