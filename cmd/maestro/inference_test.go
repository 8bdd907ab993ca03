package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineWriter hands each written chunk to a channel, so a test can wait for
// the server's listening line instead of sleeping.
type lineWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	ch  chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	select {
	case w.ch <- string(p):
	default:
	}
	return len(p), nil
}

// startInference runs `maestro inference` on random loopback ports and
// returns its gRPC and HTTP addresses; it stops at the end of the test and
// must exit cleanly.
func startInference(t *testing.T, extra ...string) (grpcAddr, httpAddr string) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &lineWriter{ch: make(chan string, 16)}
	var stderr bytes.Buffer
	done := make(chan error, 1)
	args := append([]string{"--models", filepath.Join(root, "examples", "models"),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--name", "cli-test", "--log-level", "warn"}, extra...)
	go func() { done <- runInference(ctx, args, out, &stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("maestro inference exited with %v (stderr: %s)", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("maestro inference did not stop")
		}
	})
	re := regexp.MustCompile(`gRPC on (\S+), HTTP on (\S+),`)
	select {
	case line := <-out.ch:
		m := re.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unexpected first line %q", line)
		}
		return m[1], m[2]
	case err := <-done:
		t.Fatalf("maestro inference exited early: %v (stderr: %s)", err, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("maestro inference did not start")
	}
	return "", ""
}

func TestInferenceAndPredict(t *testing.T) {
	grpcAddr, httpAddr := startInference(t)
	row := strings.TrimSuffix(strings.Repeat("0.25,", 30), ",")
	jsonFile := filepath.Join(t.TempDir(), "req.json")
	if err := os.WriteFile(jsonFile, []byte(`{"inputs": [{"name": "user_id", "shape": [2, 1], "datatype": "INT64", "data": [100898, 100753]}], "outputs": [{"name": "item_ids"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		args []string
		want []string
	}{
		"grpc, flags after the model": {
			[]string{"--addr", grpcAddr, "fraud:1", "--input", "features=" + row + "," + row},
			[]string{"model fraud version 1 (server cli-test)", "probability FP32 [2 1]"}},
		"http": {
			[]string{"--http", "--addr", httpAddr, "churn", "--input", "features=" + strings.TrimSuffix(strings.Repeat("1,", 12), ",")},
			[]string{"model churn version 2 (server cli-test)", "probabilities FP32 [1 3]", "class INT64 [1 1]"}},
		"json file": {
			[]string{"--addr", grpcAddr, "--json", jsonFile, "recommendations"},
			[]string{"model recommendations version 1", "item_ids INT64 [2 10]"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := runPredict(context.Background(), tc.args, &stdout, &stderr); err != nil {
				t.Fatalf("predict: %v (stderr %s)", err, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, stdout.String())
				}
			}
			if lines := strings.Count(stdout.String(), "\n"); lines < 3 {
				t.Errorf("no rows printed:\n%s", stdout.String())
			}
		})
	}

	errs := map[string]struct {
		args []string
		want string
	}{
		"unknown input": {[]string{"--addr", grpcAddr, "fraud", "--input", "feature=1"}, `the model has no input "feature" (inputs: features)`},
		"short row":     {[]string{"--addr", grpcAddr, "fraud", "--input", "features=1,2"}, `2 values do not fill shape [-1 30]`},
		"unknown model": {[]string{"--addr", grpcAddr, "nope", "--input", "x=1"}, `NotFound: model "nope" not found`},
		"bad value":     {[]string{"--http", "--addr", httpAddr, "fraud", "--input", "features=" + strings.Replace(row, "0.25", "abc", 1)}, `"abc" is not a JSON value`},
	}
	for name, tc := range errs {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runPredict(context.Background(), tc.args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestInferenceAndPredictUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := runInference(context.Background(), []string{"--help"}, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("inference --help = %v", err)
	}
	if !strings.Contains(stderr.String(), "-memory-budget") {
		t.Errorf("inference --help lacks flags:\n%s", stderr.String())
	}
	stderr.Reset()
	if err := runPredict(context.Background(), []string{"--help"}, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("predict --help = %v", err)
	}
	if err := runPredict(context.Background(), []string{"fraud"}, &stdout, &stderr); !errors.Is(err, errUsage) {
		t.Errorf("predict without inputs = %v, want a usage error", err)
	}
	for _, args := range [][]string{{"--memory-budget", "lots"}, {"--log-format", "xml"}, {"--max-request-size", "0"}} {
		if err := runInference(context.Background(), args, &stdout, &stderr); err == nil {
			t.Errorf("inference %v: no error", args)
		}
	}
}

func TestParseBytes(t *testing.T) {
	//nolint:gocritic // mapKey: the spaces around 10 MB are the case, parseBytes trims them
	tests := map[string]int64{"0": 0, "1024": 1024, "512MiB": 512 << 20, "2GB": 2e9, "1.5GiB": 3 << 29, "64k": 64 << 10, " 10 MB ": 10e6}
	for in, want := range tests {
		got, err := parseBytes(in)
		if err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "ten", "1XB"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q): no error", in)
		}
	}
}
