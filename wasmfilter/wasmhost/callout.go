package wasmhost

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// maxBody bounds what a callout or upstream response may return.
const maxBody = 64 << 20

// calloutResult is a finished callout waiting for delivery to the guest.
type calloutResult struct {
	token    uint32
	grpc     bool
	failed   bool // HTTP: no response (timeout, reset); reported as 0/0/0
	headers  [][2]string
	body     []byte
	trailers [][2]string
	code     uint32 // gRPC status
	msg      string
}

func newHTTPClients() (h1, h2 *http.Client) {
	t1 := http.DefaultTransport.(*http.Transport).Clone()
	t2 := http.DefaultTransport.(*http.Transport).Clone()
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	t2.Protocols = p
	return &http.Client{Transport: t1}, &http.Client{Transport: t2}
}

func (vm *VM) client(c Cluster) *http.Client {
	if c.HTTP2 {
		return vm.h2Client
	}
	return vm.httpClient
}

// startCallout runs fn on a goroutine bound to the VM and reports its
// result on vm.results; the caller holds vm.mu.
func (vm *VM) startCallout(timeoutMs uint32, fn func(ctx context.Context) calloutResult) uint32 {
	vm.nextToken++
	token := vm.nextToken
	vm.inflight++
	vm.wg.Add(1)
	go func() {
		defer vm.wg.Done()
		ctx, cancel := vm.ctx, context.CancelFunc(func() {})
		if timeoutMs > 0 {
			ctx, cancel = context.WithTimeout(ctx, time.Duration(timeoutMs)*time.Millisecond)
		}
		r := fn(ctx)
		cancel()
		r.token = token
		select {
		case vm.results <- r:
		case <-vm.ctx.Done():
		}
	}()
	return token
}

func hostHTTPCall(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	cluster, ok1 := readString(m, u32(p[0]), u32(p[1]))
	hb, ok2 := read(m, u32(p[2]), u32(p[3]))
	body, ok3 := read(m, u32(p[4]), u32(p[5]))
	tb, ok4 := read(m, u32(p[6]), u32(p[7]))
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return pw.StatusInvalidMemoryAccess
	}
	headers, err1 := pw.DeserializeMap(hb)
	trailers, err2 := pw.DeserializeMap(tb)
	if err1 != nil || err2 != nil {
		return pw.StatusBadArgument
	}
	c, ok := vm.cfg.Clusters[cluster]
	if !ok {
		vm.logf(pw.LogLevelWarn, vm.effective, fmt.Sprintf("wasmhost: http call to unknown cluster %q", cluster))
		return pw.StatusBadArgument
	}
	req := Request{Headers: headers, Body: body, Trailers: trailers}
	for _, k := range []string{":method", ":path", ":authority"} {
		if _, ok := headerValue(headers, k); !ok {
			return pw.StatusBadArgument
		}
	}
	client := vm.client(c)
	token := vm.startCallout(u32(p[8]), func(ctx context.Context) calloutResult {
		resp, err := forward(ctx, client, c.Address, req)
		if err != nil {
			return calloutResult{failed: true}
		}
		return calloutResult{headers: resp.Headers, body: resp.Body, trailers: resp.Trailers}
	})
	return okIf(m.Memory().WriteUint32Le(u32(p[9]), token))
}

// rawCodec passes serialized messages through unchanged: the guest has
// already encoded the request and decodes the response itself.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: marshal %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

func (vm *VM) grpcConn(cluster string, c Cluster) (*grpc.ClientConn, error) {
	if conn, ok := vm.grpcConns[cluster]; ok {
		return conn, nil
	}
	conn, err := grpc.NewClient(c.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	vm.grpcConns[cluster] = conn
	return conn, nil
}

func hostGRPCCall(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	cluster, ok1 := readString(m, u32(p[0]), u32(p[1]))
	service, ok2 := readString(m, u32(p[2]), u32(p[3]))
	method, ok3 := readString(m, u32(p[4]), u32(p[5]))
	mdb, ok4 := read(m, u32(p[6]), u32(p[7]))
	msg, ok5 := read(m, u32(p[8]), u32(p[9]))
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return pw.StatusInvalidMemoryAccess
	}
	md, err := pw.DeserializeMap(mdb)
	if err != nil {
		return pw.StatusParseFailure
	}
	c, ok := vm.cfg.Clusters[cluster]
	if !ok {
		vm.logf(pw.LogLevelWarn, vm.effective, fmt.Sprintf("wasmhost: grpc call to unknown cluster %q", cluster))
		return pw.StatusBadArgument
	}
	conn, err := vm.grpcConn(cluster, c)
	if err != nil {
		return pw.StatusInternalFailure
	}
	fullMethod := "/" + service + "/" + method
	token := vm.startCallout(u32(p[10]), func(ctx context.Context) calloutResult {
		kv := make([]string, 0, 2*len(md))
		for _, pair := range md {
			if !strings.HasPrefix(pair[0], ":") {
				kv = append(kv, strings.ToLower(pair[0]), pair[1])
			}
		}
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
		var out []byte
		err := conn.Invoke(ctx, fullMethod, &msg, &out, grpc.ForceCodec(rawCodec{}))
		if err != nil {
			st := status.Convert(err)
			return calloutResult{grpc: true, code: uint32(st.Code()), msg: st.Message()}
		}
		return calloutResult{grpc: true, body: out}
	})
	return okIf(m.Memory().WriteUint32Le(u32(p[11]), token))
}

func hostGRPCCancel(_ context.Context, vm *VM, _ api.Module, p []uint64) pw.Status {
	token := u32(p[0])
	if token == 0 || token > vm.nextToken {
		return pw.StatusNotFound
	}
	if vm.cancelled == nil {
		vm.cancelled = map[uint32]bool{}
	}
	vm.cancelled[token] = true
	return pw.StatusOK
}

func hostGetStatus(ctx context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	if !m.Memory().WriteUint32Le(u32(p[0]), vm.grpcStatus.code) {
		return pw.StatusInvalidMemoryAccess
	}
	return vm.returnBytes(ctx, m, []byte(vm.grpcStatus.msg), u32(p[1]), u32(p[2]))
}

// deliver runs the guest callback for a finished callout, on the root
// context as Envoy does; the guest makes the caller effective itself.
func (vm *VM) deliver(r calloutResult) error {
	if vm.cancelled[r.token] {
		delete(vm.cancelled, r.token)
		return nil
	}
	vm.effective = vm.rootID
	vm.callResp = &r
	defer func() { vm.callResp = nil }()
	root := uint64(vm.rootID)
	var err error
	switch {
	case !r.grpc && r.failed:
		_, err = vm.call("proxy_on_http_call_response", root, uint64(r.token), 0, 0, 0)
	case !r.grpc:
		_, err = vm.call("proxy_on_http_call_response", root, uint64(r.token),
			uint64(len(r.headers)), uint64(len(r.body)), uint64(len(r.trailers)))
	case r.code == 0:
		_, err = vm.call("proxy_on_grpc_receive", root, uint64(r.token), uint64(len(r.body)))
	default:
		vm.grpcStatus.code, vm.grpcStatus.msg = r.code, r.msg
		_, err = vm.call("proxy_on_grpc_close", root, uint64(r.token), uint64(r.code))
	}
	return err
}

// forward sends req to a real server at addr and returns its response with
// ":status" first and lower-case header names, as Envoy presents them.
func forward(ctx context.Context, client *http.Client, addr string, req Request) (*Response, error) {
	method, _ := headerValue(req.Headers, ":method")
	path, _ := headerValue(req.Headers, ":path")
	authority, _ := headerValue(req.Headers, ":authority")
	if method == "" {
		method = http.MethodGet
	}
	hr, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(req.Body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if authority != "" {
		hr.Host = authority
	}
	for _, kv := range req.Headers {
		if strings.HasPrefix(kv[0], ":") || strings.EqualFold(kv[0], "content-length") || strings.EqualFold(kv[0], "host") {
			continue
		}
		hr.Header.Add(kv[0], kv[1])
	}
	if len(req.Trailers) > 0 {
		hr.Trailer = http.Header{}
		for _, kv := range req.Trailers {
			hr.Trailer.Add(kv[0], kv[1])
		}
	}
	resp, err := client.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("read response body: %w", err)
	}
	out := &Response{Status: resp.StatusCode, Body: body}
	out.Headers = append([][2]string{{":status", strconv.Itoa(resp.StatusCode)}}, pairs(resp.Header)...)
	out.Trailers = pairs(resp.Trailer)
	return out, nil
}

// pairs flattens an http.Header into sorted lower-case pairs.
func pairs(h http.Header) [][2]string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out [][2]string
	for _, k := range keys {
		for _, v := range h[k] {
			out = append(out, [2]string{strings.ToLower(k), v})
		}
	}
	return out
}
