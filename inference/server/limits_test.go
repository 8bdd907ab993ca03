package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/server"
)

// limitServer is a server on repo(t) with the limits of a test.
type limitServer struct {
	http, grpc string
	cancel     context.CancelFunc
	done       chan error
}

func startLimited(t *testing.T, cfg server.Config) *limitServer {
	t.Helper()
	cfg.Models = repository.Options{Dir: repo(t), Registry: inferencetest.Registry()}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ls := &limitServer{http: hl.Addr().String(), grpc: gl.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ls.done <- s.Serve(ctx, gl, hl) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ls.done; err != nil {
			t.Error(err)
		}
	})
	return ls
}

// stalledUpload sends a request whose body stops after prefix, and returns
// the connection, to be read (for the server's answer) or closed.
func stalledUpload(t *testing.T, addr, path, prefix string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n%s", path, prefix)
	return c
}

// waitMetric polls /metrics until it holds line, bounded.
func waitMetric(t *testing.T, addr, line string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body, _ := do(t, "GET", "http://"+addr+"/metrics", nil)
		if strings.Contains(string(body), line) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed %q", line)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

const oneRow = `{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}`

// TestRequestMemoryBudget: a request that does not fit beside the ones in
// flight is refused at once (429 with Retry-After; RESOURCE_EXHAUSTED),
// one larger than the whole budget is 413, and memory given back lets
// requests through again.
func TestRequestMemoryBudget(t *testing.T) {
	// 8 rows of 3 FP32 hold 96 bytes; a 1-row request needs 12 for its
	// input and 25 for its output.
	srv := startLimited(t, server.Config{RequestMemoryBudget: 120})
	if code, body, _ := do(t, "POST", "http://"+srv.http+"/v2/models/m/infer", oneRow); code != http.StatusOK {
		t.Fatalf("alone: %d %s", code, body)
	}
	if code, body, _ := do(t, "POST", "http://"+srv.http+"/v2/models/m/infer",
		`{"inputs": [{"name": "x", "shape": [8, 3], "datatype": "FP32", "data": [`+strings.Repeat("1,", 23)+`1]}]}`); code != http.StatusRequestEntityTooLarge ||
		!strings.Contains(string(body), "more than the server's whole request memory budget of 120") {
		t.Errorf("over the whole budget: got %d %s, want 413", code, body)
	}

	holder := stalledUpload(t, srv.http, "/v2/models/m/infer", `{"inputs": [{"name": "x", "shape": [8, 3], "datatype": "FP32", "data": [1,`)
	waitMetric(t, srv.http, "maestro_inference_request_memory_bytes 96")

	code, body, hdr := do(t, "POST", "http://"+srv.http+"/v2/models/m/infer", oneRow)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || !strings.Contains(string(body), "retry later") {
		t.Errorf("beside a 96-byte request: got %d %s (Retry-After %q), want 429", code, body, hdr.Get("Retry-After"))
	}
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewGRPCInferenceServiceClient(conn)
	_, err = client.ModelInfer(ctxT(t), &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input("x", []int64{1, 3}, 1, 2, 3)}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("gRPC beside a 96-byte request: got %v, want RESOURCE_EXHAUSTED", err)
	}

	holder.Close()
	waitMetric(t, srv.http, "maestro_inference_request_memory_bytes 0")
	if code, body, _ := do(t, "POST", "http://"+srv.http+"/v2/models/m/infer", oneRow); code != http.StatusOK {
		t.Errorf("after the holder left: %d %s", code, body)
	}
	waitMetric(t, srv.http, `maestro_inference_request_memory_rejections_total{protocol="grpc",reason="busy"} 1`)
}

// TestShapeRefusedBeforeBody: a shape over max_batch_size is answered
// before the client has sent its data.
func TestShapeRefusedBeforeBody(t *testing.T) {
	srv := startLimited(t, server.Config{})
	c := stalledUpload(t, srv.http, "/v2/models/m/infer", `{"inputs": [{"name": "x", "shape": [1000000, 3], "datatype": "FP32", "data": [`)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("got %d, want 400", res.StatusCode)
	}
}

// TestChunkedBodyOverLimit: a body without Content-Length is cut at the
// request limit and answered 413.
func TestChunkedBodyOverLimit(t *testing.T) {
	srv := startLimited(t, server.Config{MaxRequestBytes: 1 << 10})
	pr := strings.NewReader(`{"id": "` + strings.Repeat("a", 4<<10) + `", "inputs": []}`)
	req, err := http.NewRequestWithContext(ctxT(t), "POST", "http://"+srv.http+"/v2/models/m/infer", struct{ *strings.Reader }{pr})
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if req.ContentLength != 0 || res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked body over the limit: got %d (content length %d), want 413", res.StatusCode, req.ContentLength)
	}
}

// TestRepositoryNameUnimplemented: a request naming a repository is
// answered UNIMPLEMENTED, as Triton answers when not multi-repository.
func TestRepositoryNameUnimplemented(t *testing.T) {
	srv := startLimited(t, server.Config{})
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewGRPCInferenceServiceClient(conn)
	ctx := ctxT(t)
	_, err1 := c.RepositoryIndex(ctx, &pb.RepositoryIndexRequest{RepositoryName: "other"})
	_, err2 := c.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{RepositoryName: "other", ModelName: "m"})
	_, err3 := c.RepositoryModelUnload(ctx, &pb.RepositoryModelUnloadRequest{RepositoryName: "other", ModelName: "m"})
	for i, err := range []error{err1, err2, err3} {
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("call %d: got %v, want UNIMPLEMENTED", i, err)
		}
	}
	if _, err := c.RepositoryIndex(ctx, &pb.RepositoryIndexRequest{}); err != nil {
		t.Errorf("without a repository name: %v", err)
	}
}

// TestModelControlNone: by default load and unload are refused on every
// port, as Triton refuses them outside its explicit mode (UNAVAILABLE,
// HTTP 503), and the models keep serving.
func TestModelControlNone(t *testing.T) {
	srv := startLimited(t, server.Config{})
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewGRPCInferenceServiceClient(conn)
	ctx := ctxT(t)
	if _, err := c.RepositoryModelUnload(ctx, &pb.RepositoryModelUnloadRequest{ModelName: "m"}); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "--model-control none") {
		t.Errorf("gRPC unload: got %v, want UNAVAILABLE naming the mode", err)
	}
	if _, err := c.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: "m"}); status.Code(err) != codes.Unavailable {
		t.Errorf("gRPC load: got %v, want UNAVAILABLE", err)
	}
	for _, op := range []string{"load", "unload"} {
		if code, body, _ := do(t, "POST", "http://"+srv.http+"/v2/repository/models/m/"+op, ""); code != http.StatusServiceUnavailable {
			t.Errorf("REST %s: got %d %s, want 503", op, code, body)
		}
	}
	if code, body, _ := do(t, "POST", "http://"+srv.http+"/v2/models/m/infer", oneRow); code != http.StatusOK {
		t.Errorf("infer after refused unload: %d %s", code, body)
	}
	if _, err := server.New(server.Config{ModelControl: "poll"}); err == nil || !strings.Contains(err.Error(), "want none or explicit") {
		t.Errorf("unknown mode: %v", err)
	}
}

// TestBodyTotalTimeout: a client that keeps sending a byte now and then
// never trips the idle timeout, but is cut (408) at the total one.
func TestBodyTotalTimeout(t *testing.T) {
	const total = 500 * time.Millisecond
	srv := startLimited(t, server.Config{BodyIdleTimeout: 10 * time.Second, BodyTimeout: total})
	c := stalledUpload(t, srv.http, "/v2/models/m/infer", `{"inputs": [{"name": "x", "shape": [8, 3], "datatype": "FP32", "data": [1`)
	start := time.Now()
	answered := make(chan *http.Response, 1)
	go func() {
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			answered <- nil
			return
		}
		res.Body.Close()
		answered <- res
	}()
	tick := time.NewTicker(50 * time.Millisecond) // the slow client's pace
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case res := <-answered:
			took := time.Since(start)
			if res == nil || res.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("got %v, want 408", res)
			}
			if took < total {
				t.Errorf("cut after %v, before the %v total timeout", took, total)
			}
			return
		case <-tick.C:
			_, _ = c.Write([]byte(",1"))
		case <-deadline:
			t.Fatal("a body trickling forever was never cut")
		}
	}
}
