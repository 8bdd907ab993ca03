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
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// maxBody bounds what a callout or upstream response may return.
const maxBody = 64 << 20

// Upstreams is how the host reaches Envoy clusters: the targets of
// proxy_http_call and proxy_grpc_call and of VM.RoundTrip. The embedder
// supplies it (the gateway: its clusters from CDS/EDS); StaticUpstreams is
// the simple form for tests. Methods may be called from several goroutines
// at once.
type Upstreams interface {
	// HasCluster reports whether the node has the cluster. A callout to a
	// cluster it lacks fails at once, as in Envoy, and is never sent.
	HasCluster(name string) bool
	// HTTP sends req to cluster and returns the whole response, headers
	// lower-case with ":status" first. req carries ":method", ":path" and
	// ":authority" among its headers. An error means no response (reset,
	// timeout, unreachable).
	HTTP(ctx context.Context, cluster string, req *Request) (*Response, error)
	// GRPC makes one unary call to cluster and returns the serialized
	// response message. A failed call returns an error carrying its gRPC
	// status (google.golang.org/grpc/status.FromError).
	GRPC(ctx context.Context, cluster string, call *GRPCCall) ([]byte, error)
}

// GRPCCall is one proxy_grpc_call: the message is already serialized by
// the guest.
type GRPCCall struct {
	Service, Method string
	Metadata        [][2]string
	Message         []byte
}

// StaticUpstreams is a fixed map of cluster names to real servers, for
// tests and simple embedders.
type StaticUpstreams struct {
	clusters map[string]Cluster
	h1, h2   *http.Client

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewStaticUpstreams returns Upstreams over clusters; Close releases its
// connections.
func NewStaticUpstreams(clusters map[string]Cluster) *StaticUpstreams {
	t1 := http.DefaultTransport.(*http.Transport).Clone()
	t2 := http.DefaultTransport.(*http.Transport).Clone()
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	t2.Protocols = p
	return &StaticUpstreams{clusters: clusters, h1: &http.Client{Transport: t1}, h2: &http.Client{Transport: t2},
		conns: map[string]*grpc.ClientConn{}}
}

// HasCluster implements Upstreams.
func (u *StaticUpstreams) HasCluster(name string) bool {
	_, ok := u.clusters[name]
	return ok
}

// HTTP implements Upstreams.
func (u *StaticUpstreams) HTTP(ctx context.Context, cluster string, req *Request) (*Response, error) {
	c, ok := u.clusters[cluster]
	if !ok {
		return nil, fmt.Errorf("unknown cluster %q", cluster)
	}
	client := u.h1
	if c.HTTP2 {
		client = u.h2
	}
	return forward(ctx, client, c.Address, req)
}

// GRPC implements Upstreams.
func (u *StaticUpstreams) GRPC(ctx context.Context, cluster string, call *GRPCCall) ([]byte, error) {
	conn, err := u.conn(cluster)
	if err != nil {
		return nil, err
	}
	kv := make([]string, 0, 2*len(call.Metadata))
	for _, pair := range call.Metadata {
		if !strings.HasPrefix(pair[0], ":") {
			kv = append(kv, strings.ToLower(pair[0]), pair[1])
		}
	}
	ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	var out []byte
	msg := call.Message
	err = conn.Invoke(ctx, "/"+call.Service+"/"+call.Method, &msg, &out, grpc.ForceCodec(rawCodec{}))
	return out, err
}

func (u *StaticUpstreams) conn(cluster string) (*grpc.ClientConn, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if conn, ok := u.conns[cluster]; ok {
		return conn, nil
	}
	c, ok := u.clusters[cluster]
	if !ok {
		return nil, fmt.Errorf("unknown cluster %q", cluster)
	}
	conn, err := grpc.NewClient(c.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("grpc client for cluster %q: %w", cluster, err)
	}
	u.conns[cluster] = conn
	return conn, nil
}

// Close closes the gRPC connections and idle HTTP connections.
func (u *StaticUpstreams) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.conns {
		c.Close()
	}
	u.conns = map[string]*grpc.ClientConn{}
	u.h1.CloseIdleConnections()
	u.h2.CloseIdleConnections()
	return nil
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

// forward sends req to a real server at addr and returns its response with
// ":status" first and lower-case header names, as Envoy presents them.
func forward(ctx context.Context, client *http.Client, addr string, req *Request) (*Response, error) {
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
