package fanout_test

import (
	"bytes"
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/runtime/builtin"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/fanouttest"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/oip"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// member is one real model behind a cluster, reachable over REST and gRPC.
type member struct {
	srv            *inferencetest.Server
	model, version string
}

// cluster names: REST clusters are the member names, gRPC ones add ".grpc".
func grpcCluster(name string) string { return name + ".grpc" }

// fixture is a set of real inference servers for the demo fraud models.
type fixture struct {
	members  map[string]member
	clusters map[string]wasmtest.Cluster
}

// startFraud starts one real server per fraud ensemble member, serving the
// demo model repository.
func startFraud(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{members: map[string]member{}, clusters: map[string]wasmtest.Cluster{}}
	for _, m := range []struct{ name, model, version string }{
		{"fraud.v1", "fraud", "1"}, {"fraud.v2", "fraud", "2"}, {"fraud-logistic.v1", "fraud-logistic", ""},
	} {
		srv := inferencetest.Start(t, inferencetest.Options{Name: m.name, Registry: builtin.Registry()})
		f.add(m.name, member{srv: srv, model: m.model, version: m.version})
	}
	return f
}

func (f *fixture) add(name string, m member) {
	f.members[name] = m
	f.clusters[name] = wasmtest.Cluster{Address: m.srv.HTTPAddr}
	f.clusters[grpcCluster(name)] = wasmtest.Cluster{Address: m.srv.GRPCAddr, HTTP2: true}
}

// routeMembers builds config members for the named fixture members.
func (f *fixture) routeMembers(grpc bool, names ...string) []filterconfig.FanoutMember {
	out := make([]filterconfig.FanoutMember, len(names))
	for i, n := range names {
		m := f.members[n]
		c := n
		if grpc {
			c = grpcCluster(n)
		}
		out[i] = filterconfig.FanoutMember{Name: n, Cluster: c, Model: m.model, Version: m.version}
	}
	return out
}

// testCtx is one round trip's deadline. It compiles fanout.wasm first (once
// per test binary; seconds on a loaded machine) so that the compile never
// eats into the budget of the requests the deadline is for.
func testCtx(t *testing.T) context.Context {
	wasmtest.Load(t, fanouttest.Pkg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// features is a deterministic batch of fraud inputs, spread widely enough
// that the models disagree on some rows.
func features(rows int) oip.Tensor {
	v := make([]float64, rows*30)
	for i := range v {
		r, c := i/30, i%30
		v[i] = float64(float32(2.5 * math.Sin(float64(r*31+c*7)*0.37+float64(r))))
	}
	return oip.Tensor{Name: "features", Datatype: "FP32", Shape: []int64{int64(rows), 30}, Values: v}
}

func restRequest(t testing.TB, model string, in oip.Tensor) wasmtest.Request {
	t.Helper()
	body, err := oip.EncodeJSONRequest("req-1", []oip.Tensor{in})
	if err != nil {
		t.Fatal(err)
	}
	return wasmtest.Request{Method: "POST", Path: oip.InferPathFor(model, ""),
		Headers: [][2]string{{"content-type", "application/json"}, {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}, Body: body}
}

func grpcRequest(t testing.TB, model string, in oip.Tensor) wasmtest.Request {
	t.Helper()
	msg, err := oip.EncodeGRPCRequest(&oip.Request{ModelName: model, ID: "req-1", Inputs: []oip.Tensor{in}})
	if err != nil {
		t.Fatal(err)
	}
	return wasmtest.Request{Method: "POST", Path: "/inference.GRPCInferenceService/ModelInfer",
		Headers: [][2]string{{"content-type", "application/grpc"}, {"te", "trailers"}}, Body: oip.Frame(msg)}
}

// directREST asks a member for its own answer over REST, bypassing the
// filter.
func directREST(t *testing.T, m member, in []oip.Tensor) *oip.Response {
	t.Helper()
	body, err := oip.EncodeJSONRequest("", in)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+m.srv.HTTPAddr+oip.InferPathFor(m.model, m.version), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("direct call to %s: %d %s", m.srv.Name, resp.StatusCode, b)
	}
	out, err := oip.DecodeJSONResponse(b)
	if err != nil {
		t.Fatalf("direct answer of %s: %v", m.srv.Name, err)
	}
	return out
}

// directGRPC asks a member for its own answer over gRPC with the generated
// client, bypassing the filter.
func directGRPC(t *testing.T, ctx context.Context, m member, in []oip.Tensor) *oip.Response {
	t.Helper()
	req := toPB(t, &oip.Request{ModelName: m.model, ModelVersion: m.version, Inputs: in})
	resp, err := m.srv.Client(t).ModelInfer(ctx, req)
	if err != nil {
		t.Fatalf("direct grpc call to %s: %v", m.srv.Name, err)
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	out, err := oip.DecodeGRPCResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// toPB turns a request into the generated type, through the wire format.
func toPB(t testing.TB, r *oip.Request) *pb.ModelInferRequest {
	t.Helper()
	msg, err := oip.EncodeGRPCRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	var req pb.ModelInferRequest
	if err := proto.Unmarshal(msg, &req); err != nil {
		t.Fatal(err)
	}
	return &req
}

// decodeGRPCBody reads the ModelInferResponse a client would get.
func decodeGRPCBody(t *testing.T, body []byte) *pb.ModelInferResponse {
	t.Helper()
	msg, err := oip.Unframe(body)
	if err != nil {
		t.Fatalf("response body: %v", err)
	}
	var resp pb.ModelInferResponse
	if err := proto.Unmarshal(msg, &resp); err != nil {
		t.Fatalf("response body: %v", err)
	}
	return &resp
}

// heldProxy relays TCP to target but holds every answer back until
// release is called (or the test ends): a member that cannot answer before
// the test says so, however fast or loaded the machine is.
func heldProxy(t *testing.T, target string) (addr string, release func()) {
	t.Helper()
	released := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(released) }) }
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		cancel()
		lis.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			track(c)
			track(up)
			wg.Add(2)
			go func() {
				defer wg.Done()
				relay(t, up, c)
			}()
			go func() {
				defer wg.Done()
				select {
				case <-ctx.Done():
					return
				case <-released:
				}
				relay(t, c, up)
			}()
		}
	}()
	return lis.Addr().String(), release
}

// relay copies src to dst until either side ends. A connection the
// filter or the test closes is its normal end, so the error is only
// logged, for the story of a failing test.
func relay(t *testing.T, dst io.Writer, src io.Reader) {
	if _, err := io.Copy(dst, src); err != nil {
		t.Logf("held proxy: %v", err)
	}
}

// deadAddress is a loopback address nothing listens on.
func deadAddress(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}
