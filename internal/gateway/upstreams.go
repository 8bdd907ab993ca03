package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/internal/gateway/upstream"
	"github.com/maestro-ml/maestro/wasmfilter/wasmhost"
)

// maxCalloutBody bounds a callout's response.
const maxCalloutBody = 64 << 20

// upstreams sends the wasm filters' callouts to the node's clusters
// through the gateway's pools, so they are balanced, limited, counted and
// ejected like routed requests (wasmhost.Upstreams).
type upstreams struct{ clusters *upstream.Manager }

func (u upstreams) HasCluster(name string) bool { return u.clusters.Get(name) != nil }

// send makes one request to a host of cluster and reads the whole answer.
func (u upstreams) send(ctx context.Context, cluster string, build func(scheme, addr string) (*http.Request, error)) (*http.Response, []byte, error) {
	c := u.clusters.Get(cluster)
	if c == nil {
		return nil, nil, fmt.Errorf("cluster %q unknown", cluster)
	}
	release, err := c.Acquire()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %q: %w", cluster, err)
	}
	defer release()
	host, err := c.Pick()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %q: %w", cluster, err)
	}
	req, err := build(c.Scheme(), host.Addr)
	if err != nil {
		return nil, nil, err
	}
	start := time.Now()
	c.Stats.RqTotal.Inc()
	resp, err := c.Transport().RoundTrip(req)
	if err != nil {
		c.Report(host, http.StatusServiceUnavailable)
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCalloutBody))
	if err != nil {
		c.Report(host, http.StatusServiceUnavailable)
		return nil, nil, err
	}
	code := resp.StatusCode
	if gs := grpcStatus(resp); gs > 0 {
		code = http.StatusServiceUnavailable
	}
	c.Stats.Response(resp.StatusCode, time.Since(start))
	c.Report(host, code)
	return resp, body, nil
}

// HTTP implements wasmhost.Upstreams.
func (u upstreams) HTTP(ctx context.Context, cluster string, req *wasmhost.Request) (*wasmhost.Response, error) {
	resp, body, err := u.send(ctx, cluster, func(scheme, addr string) (*http.Request, error) {
		var method, path, authority string
		h := http.Header{}
		for _, kv := range req.Headers {
			switch kv[0] {
			case ":method":
				method = kv[1]
			case ":path":
				path = kv[1]
			case ":authority":
				authority = kv[1]
			default:
				if !strings.HasPrefix(kv[0], ":") && kv[0] != "content-length" {
					h.Add(kv[0], kv[1])
				}
			}
		}
		if method == "" {
			method = http.MethodGet
		}
		hr, err := http.NewRequestWithContext(ctx, method, scheme+"://"+addr+path, bytes.NewReader(req.Body))
		if err != nil {
			return nil, err
		}
		hr.Header, hr.Host = h, authority
		if len(req.Trailers) > 0 {
			hr.Trailer = http.Header{}
			for _, kv := range req.Trailers {
				hr.Trailer.Add(kv[0], kv[1])
			}
		}
		return hr, nil
	})
	if err != nil {
		return nil, err
	}
	out := &wasmhost.Response{Status: resp.StatusCode, Body: body,
		Headers: append([][2]string{{":status", strconv.Itoa(resp.StatusCode)}}, lowerPairs(resp.Header)...), Trailers: lowerPairs(resp.Trailer)}
	return out, nil
}

// GRPC implements wasmhost.Upstreams: one unary call over the cluster's
// HTTP/2 pool.
func (u upstreams) GRPC(ctx context.Context, cluster string, call *wasmhost.GRPCCall) ([]byte, error) {
	if c := u.clusters.Get(cluster); c != nil && !c.Config().HTTP2 {
		return nil, status.Errorf(codes.Unavailable, "cluster %q does not speak HTTP/2", cluster)
	}
	frame := make([]byte, 5+len(call.Message))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(call.Message)))
	copy(frame[5:], call.Message)
	resp, body, err := u.send(ctx, cluster, func(scheme, addr string) (*http.Request, error) {
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+addr+"/"+call.Service+"/"+call.Method, bytes.NewReader(frame))
		if err != nil {
			return nil, err
		}
		for _, kv := range call.Metadata {
			if !strings.HasPrefix(kv[0], ":") {
				hr.Header.Add(kv[0], kv[1])
			}
		}
		hr.Header.Set("content-type", "application/grpc")
		hr.Header.Set("te", "trailers")
		hr.Host = cluster
		return hr, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.Error(codes.DeadlineExceeded, err.Error())
		}
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if resp.StatusCode != http.StatusOK {
		return nil, status.Errorf(codes.Unavailable, "http status %d", resp.StatusCode)
	}
	if gs := grpcStatus(resp); gs != 0 {
		msg := resp.Trailer.Get("grpc-message")
		if msg == "" {
			msg = resp.Header.Get("grpc-message")
		}
		if m, err := url.PathUnescape(msg); err == nil {
			msg = m
		}
		return nil, status.Error(codes.Code(max(gs, 2)), msg)
	}
	if len(body) < 5 || body[0] != 0 || int(binary.BigEndian.Uint32(body[1:5])) != len(body)-5 {
		return nil, status.Error(codes.Internal, errors.New("malformed gRPC response frame").Error())
	}
	return body[5:], nil
}

// grpcStatus is the response's grpc-status (trailers, or headers for a
// trailers-only answer); -1 when absent, 2 (UNKNOWN) when unreadable.
func grpcStatus(resp *http.Response) int {
	v := resp.Trailer.Get("grpc-status")
	if v == "" {
		v = resp.Header.Get("grpc-status")
	}
	if v == "" {
		return -1
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 2
	}
	return n
}

func lowerPairs(h http.Header) [][2]string {
	var out [][2]string
	for k, vs := range h {
		for _, v := range vs {
			out = append(out, [2]string{strings.ToLower(k), v})
		}
	}
	return out
}
