package h2

import (
	"context"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestRoundTripList sends list requests to Go's h2c server: what the
// server sees must be what RoundTrip would send (pseudo-headers, fields in
// order, content-length, no hop-by-hop field), and the answer must come
// back as lower-case lists with the trailers after the body.
func TestRoundTripList(t *testing.T) {
	addr := goServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h := w.Header()
		h.Set("X-Method", r.Method)
		h.Set("X-Host", r.Host)
		h.Set("X-Path", r.URL.RequestURI())
		h.Set("X-Length", r.Header.Get("Content-Length"))
		h["X-Order"] = r.Header.Values("X-Multi")
		h.Set("X-Connection", r.Header.Get("Connection"))
		if r.URL.Path == "/trailers-only" {
			h.Set("Grpc-Status", "5")
			w.WriteHeader(http.StatusOK)
			return
		}
		h.Set("Trailer", "Grpc-Status")
		_, _ = w.Write(body)
		h.Set("Grpc-Status", "0")
	})
	tr := newTransport()
	defer tr.CloseIdleConnections()
	cases := []struct {
		name                      string
		req                       ListRequest
		wantHost, wantLength      string
		wantBody, wantGRPCTrailer string
		wantGRPCHeader            string
	}{
		{name: "body and trailers", req: ListRequest{Method: http.MethodPost, Authority: "svc.example", Path: "/echo?x=1",
			Header: [][2]string{{"x-multi", "a"}, {"connection", "close"}, {"x-multi", "b"}}, Body: []byte("hello")},
			wantHost: "svc.example", wantLength: "5", wantBody: "hello", wantGRPCTrailer: "0"},
		{name: "no authority is the address", req: ListRequest{Method: http.MethodGet, Path: "/echo"},
			wantHost: addr, wantGRPCTrailer: "0"},
		{name: "trailers-only answer", req: ListRequest{Method: http.MethodPost, Authority: "a", Path: "/trailers-only"},
			wantHost: "a", wantLength: "0", wantGRPCHeader: "5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := tr.RoundTripList(ctx, addr, &tc.req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			get := func(fs [][2]string, k string) []string {
				var vs []string
				for _, kv := range fs {
					if kv[0] == k {
						vs = append(vs, kv[1])
					}
				}
				return vs
			}
			for _, kv := range resp.Header {
				if !isLower(kv[0]) {
					t.Errorf("header name %q is not lower-case", kv[0])
				}
			}
			want := map[string]string{"x-method": tc.req.Method, "x-host": tc.wantHost, "x-path": tc.req.Path,
				"x-length": tc.wantLength, "x-connection": ""}
			for k, v := range want {
				if got := get(resp.Header, k); len(got) != 1 || got[0] != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if got := get(resp.Header, "x-order"); len(tc.req.Header) > 0 && !slices.Equal(got, []string{"a", "b"}) {
				t.Errorf("x-multi arrived as %q, want [a b] in order", got)
			}
			if resp.Status != http.StatusOK || string(body) != tc.wantBody {
				t.Errorf("status %d body %q, want 200 %q", resp.Status, body, tc.wantBody)
			}
			if got := get(resp.Trailers(), "grpc-status"); tc.wantGRPCTrailer != "" && !slices.Equal(got, []string{tc.wantGRPCTrailer}) {
				t.Errorf("trailer grpc-status %q, want %q", got, tc.wantGRPCTrailer)
			}
			if got := get(resp.Header, "grpc-status"); tc.wantGRPCHeader != "" && !slices.Equal(got, []string{tc.wantGRPCHeader}) {
				t.Errorf("header grpc-status %q, want %q", got, tc.wantGRPCHeader)
			}
		})
	}
}
