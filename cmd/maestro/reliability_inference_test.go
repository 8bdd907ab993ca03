package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// subprocessEnv makes the test binary run main() instead of the tests, so
// that the reliability tests measure a real `maestro inference` process
// (its memory, its exit code) without building the binary separately.
const subprocessEnv = "MAESTRO_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(subprocessEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// maestroProcess is `maestro inference` running as a child process.
type maestroProcess struct {
	cmd      *exec.Cmd
	grpcAddr string
	httpAddr string
	admin    string // the admin address, or what the server says instead
	stderr   *bytes.Buffer
	exited   chan struct{}
	exitErr  error
}

// startMaestro runs `maestro <args>` as a child process and waits for the
// inference server's listening line. The process is killed at the end of
// the test if still running.
func startMaestro(t *testing.T, args ...string) *maestroProcess {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), subprocessEnv+"=1")
	p := &maestroProcess{cmd: cmd, stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = &syncWriter{w: p.stderr}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	re := regexp.MustCompile(`gRPC on (\S+), HTTP on (\S+), .*, admin (.*)$`)
	select {
	case line := <-lines:
		m := re.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unexpected first line %q", line)
		}
		p.grpcAddr, p.httpAddr, p.admin = m[1], m[2], m[3]
	case <-p.exited:
		t.Fatalf("maestro exited early: %v\n%s", p.exitErr, p.stderr)
	case <-time.After(60 * time.Second):
		t.Fatal("maestro did not start")
	}
	return p
}

// peakRSS is the process's high-water resident set (VmHWM), in bytes.
func (p *maestroProcess) peakRSS(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// stop sends SIGTERM and returns how long the exit took and the exit error.
func (p *maestroProcess) stop(t *testing.T, within time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		return time.Since(start), p.exitErr
	case <-time.After(within):
		t.Fatalf("maestro did not exit within %v of SIGTERM\n%s", within, p.stderr)
		return 0, nil
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// writeLinearModel writes a linear model "big" taking rows of 4 FP32
// features, up to maxBatch rows per request.
func writeLinearModel(t *testing.T, maxBatch int) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "big", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("name: big\nruntime: linear\nmax_batch_size: %d\ninputs:\n  - {name: x, datatype: FP32, shape: [4]}\noutputs:\n  - {name: y, datatype: FP32, shape: [1]}\n", maxBatch)
	model := `{"format": "maestro-linear/v1", "num_features": 4, "link": "identity", "weights": [[1, 1, 1, 1]], "intercept": [0]}`
	if err := os.WriteFile(filepath.Join(dir, "big", "config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "big", "1", "model.json"), []byte(model), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// bigBody is a REST request of about size bytes for model "big".
func bigBody(size int) ([]byte, int) {
	const row = "[0.123,0.456,0.789,0.012]"
	rows := size / (len(row) + 1)
	var b bytes.Buffer
	b.Grow(size + 200)
	fmt.Fprintf(&b, `{"inputs": [{"name": "x", "shape": [%d, 4], "datatype": "FP32", "data": [`, rows)
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	b.WriteString("]}]}")
	return b.Bytes(), rows
}

// TestReliabilityRESTMemory: 8 concurrent 60 MB REST bodies keep the
// server's resident memory under 300 MB with the default limits; each is
// answered 200 or 429, none fails otherwise.
func TestReliabilityRESTMemory(t *testing.T) {
	const concurrent, size, limit = 8, 60 << 20, 300 << 20
	// Default memory limits; only the body timeout is raised, so that
	// uploading 60 MB on a machine loaded by other tests cannot turn a
	// served request into a 408.
	p := startMaestro(t, "inference", "--models", writeLinearModel(t, 1<<22),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "warn", "--body-timeout", "5m")
	body, rows := bigBody(size)
	before := p.peakRSS(t)

	client := &http.Client{Timeout: 5 * time.Minute}
	codes := make([]int, concurrent)
	errs := make([]error, concurrent)
	var wg sync.WaitGroup
	for i := range concurrent {
		wg.Go(func() {
			res, err := client.Post("http://"+p.httpAddr+"/v2/models/big/infer", "application/json", bytes.NewReader(body))
			if err != nil {
				errs[i] = err
				return
			}
			defer res.Body.Close()
			if _, err := io.Copy(io.Discard, res.Body); err != nil {
				errs[i] = err
			}
			codes[i] = res.StatusCode
		})
	}
	wg.Wait()
	ok := 0
	for i := range concurrent {
		switch {
		case errs[i] != nil:
			// A refused request's connection closes before the client has
			// sent the whole body; the client may see that as a write error.
			if !isConnClosed(errs[i]) {
				t.Errorf("request %d: %v", i, errs[i])
			}
		case codes[i] == http.StatusOK:
			ok++
		case codes[i] != http.StatusTooManyRequests:
			t.Errorf("request %d: status %d, want 200 or 429", i, codes[i])
		}
	}
	peak := p.peakRSS(t)
	t.Logf("%d concurrent %d MB bodies (%d rows each): %d answered 200, the rest 429; peak RSS %d MiB (%d MiB at start)",
		concurrent, size>>20, rows, ok, peak>>20, before>>20)
	if ok == 0 {
		t.Error("no request was served: the default budget must admit one 60 MB body")
	}
	if peak > limit {
		t.Errorf("peak RSS %d MiB, want under %d MiB", peak>>20, limit>>20)
	}
	if _, err := p.stop(t, 30*time.Second); err != nil {
		t.Errorf("exit: %v\n%s", err, p.stderr)
	}
}

func isConnClosed(err error) bool {
	var op *net.OpError
	s := err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe") ||
		strings.Contains(s, "EOF") || (errors.As(err, &op) && op.Op == "write")
}

// TestReliabilityStalledUploads: 300 uploads that stall mid-body are each
// cut (408, connection closed) within the body idle timeout plus slack,
// and the server keeps answering meanwhile.
func TestReliabilityStalledUploads(t *testing.T) {
	const uploads, idle = 300, time.Second
	p := startMaestro(t, "inference", "--models", writeLinearModel(t, 1024),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "warn",
		"--body-idle-timeout", idle.String())
	conns := openStalled(t, p.httpAddr, uploads)
	start := time.Now()
	waitReserved(t, p.httpAddr, uploads*32)
	if res, err := http.Get("http://" + p.httpAddr + "/v2/health/ready"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("server does not answer beside %d stalled uploads: %v", uploads, err)
	}
	var slowest time.Duration
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("upload %d: no answer: %v", i, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestTimeout {
			t.Errorf("upload %d: status %d, want 408", i, res.StatusCode)
		}
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("%d stalled uploads all cut within %v of the last byte (idle timeout %v)", uploads, slowest.Round(time.Millisecond), idle)
	// Slack for a loaded machine; without the deadline they would never be cut.
	if slowest > idle+10*time.Second {
		t.Errorf("uploads cut after %v, want within the %v idle timeout plus slack", slowest, idle)
	}
}

// TestReliabilityShutdownWithStalledUploads: SIGTERM with stalled uploads
// in flight (and long body timeouts) exits 0 within 2 s.
func TestReliabilityShutdownWithStalledUploads(t *testing.T) {
	p := startMaestro(t, "inference", "--models", writeLinearModel(t, 1024),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "warn",
		"--body-idle-timeout", "10m", "--body-timeout", "10m")
	openStalled(t, p.httpAddr, 50)
	waitReserved(t, p.httpAddr, 50*32)
	took, err := p.stop(t, 30*time.Second)
	t.Logf("SIGTERM with 50 stalled uploads: exit after %v (%v)", took.Round(time.Millisecond), err)
	if err != nil {
		t.Errorf("exit: %v, want 0\n%s", err, p.stderr)
	}
	if took > 2*time.Second {
		t.Errorf("exit took %v, want within 2s", took)
	}
}

// waitReserved polls /metrics until requests in flight hold bytes: the
// server is then reading every stalled upload (32 bytes each).
func waitReserved(t *testing.T, addr string, bytes int) {
	t.Helper()
	want := fmt.Sprintf("maestro_inference_request_memory_bytes %d\n", bytes)
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if strings.Contains(string(body), want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never held %d bytes for stalled uploads", bytes)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// openStalled opens n uploads that send part of a body and stop.
func openStalled(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "POST /v2/models/big/infer HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\n"+
			`{"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1,`)
		conns[i] = c
	}
	return conns
}

// TestInferenceModelControlExplicit: with --model-control explicit, load
// and unload answer on the admin listener (REST and gRPC) and are refused
// (403) on the inference port; by default there is no admin listener.
func TestInferenceModelControlExplicit(t *testing.T) {
	models := writeLinearModel(t, 8)
	p := startMaestro(t, "inference", "--models", models, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--log-level", "warn", "--model-control", "explicit", "--admin-addr", "127.0.0.1:0")
	post := func(url string) int {
		res, err := http.Post(url, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := post("http://" + p.httpAddr + "/v2/repository/models/big/unload"); code != http.StatusForbidden {
		t.Errorf("unload on the inference port: %d, want 403", code)
	}
	if code := post("http://" + p.admin + "/v2/repository/models/big/unload"); code != http.StatusOK {
		t.Errorf("unload on the admin port: %d, want 200", code)
	}
	if code := post("http://" + p.admin + "/v2/repository/models/big/load"); code != http.StatusOK {
		t.Errorf("load on the admin port: %d, want 200", code)
	}
	if _, err := p.stop(t, 30*time.Second); err != nil {
		t.Errorf("exit: %v\n%s", err, p.stderr)
	}

	q := startMaestro(t, "inference", "--models", models, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "warn")
	if !strings.HasPrefix(q.admin, "off") {
		t.Errorf("default admin listener: %q, want off", q.admin)
	}
	if code := post("http://" + q.httpAddr + "/v2/repository/models/big/unload"); code != http.StatusServiceUnavailable {
		t.Errorf("unload by default: %d, want 503 as Triton answers outside explicit mode", code)
	}
	if _, err := q.stop(t, 30*time.Second); err != nil {
		t.Errorf("exit: %v\n%s", err, q.stderr)
	}
}
