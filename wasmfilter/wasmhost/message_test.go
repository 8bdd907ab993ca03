package wasmhost_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/maestro-ml/maestro/wasmfilter/wasmhost"
)

// outcome is what one drive of a stream gives: the guest calls in order
// and the messages as the filter left them.
type outcome struct {
	calls                         []string
	reqHeaders, respHeaders, resp [][2]string
	reqBody, respBody             []byte
	local                         bool
}

// Request and Response (one call per direction) must make the guest calls
// the per-callback methods make, in the same order, and leave the same
// messages; and since they keep the caller's lists and bodies rather than
// copy them, the filter's edits must never write into the caller's arrays.
func TestWholeMessageMatchesPerCallback(t *testing.T) {
	trace, take := recordCalls()
	vm := newVM(t, wasmhost.Config{Trace: trace})
	cases := []struct {
		name, path string
		body       []byte
		trailers   [][2]string
	}{
		{"headers only", "/", nil, nil},
		{"body the filter replaces", "/upper", []byte("make me loud"), nil},
		{"body and trailers", "/upper", []byte("abc"), [][2]string{{"x-t", "1"}}},
		{"headers read after continue", "/late-headers", []byte("x"), nil},
	}
	respHeaders := [][2]string{{":status", "200"}, {"content-type", "application/grpc"}}
	respTrailers := [][2]string{{"grpc-status", "0"}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reqHeaders := [][2]string{{":method", "POST"}, {":path", tc.path}, {":authority", "x"}}
			perCallback := func() outcome {
				s, err := vm.NewStream()
				if err != nil {
					t.Fatal(err)
				}
				take()
				hasBody, hasTrailers := len(tc.body) > 0, len(tc.trailers) > 0
				if _, err := s.RequestHeaders(reqHeaders, !hasBody && !hasTrailers); err != nil {
					t.Fatal(err)
				}
				if hasBody && s.LocalResponse() == nil {
					if _, err := s.RequestBody(tc.body, !hasTrailers); err != nil {
						t.Fatal(err)
					}
				}
				if hasTrailers && s.LocalResponse() == nil {
					if _, err := s.RequestTrailers(tc.trailers); err != nil {
						t.Fatal(err)
					}
				}
				o := outcome{reqHeaders: s.RequestHeaderMap(), reqBody: s.RequestBodyBytes()}
				if _, err := s.ResponseHeaders(respHeaders, false); err != nil {
					t.Fatal(err)
				}
				if _, err := s.ResponseBody([]byte("answer"), false); err != nil {
					t.Fatal(err)
				}
				if _, err := s.ResponseTrailers(respTrailers); err != nil {
					t.Fatal(err)
				}
				o.respHeaders, o.respBody, o.resp = s.ResponseHeaderMap(), s.ResponseBodyBytes(), s.ResponseTrailerMap()
				o.local = s.LocalResponse() != nil
				if err := s.Done(); err != nil {
					t.Fatal(err)
				}
				o.calls = take()
				return o
			}
			whole := func() outcome {
				// Spare capacity holding a sentinel: an append by the host
				// into the caller's array would overwrite it.
				sentinel := [2]string{"sentinel", "untouched"}
				h := append(slices.Clip(slices.Clone(reqHeaders)), sentinel)[:len(reqHeaders)]
				body := append(bytes.Clone(tc.body), '!')[:len(tc.body)]
				hCopy, bodyCopy := slices.Clone(h), bytes.Clone(body)
				s, err := vm.NewStream()
				if err != nil {
					t.Fatal(err)
				}
				take()
				if err := s.Request(h, body, tc.trailers); err != nil {
					t.Fatal(err)
				}
				var o outcome
				o.reqHeaders, o.reqBody, _ = s.RequestResult()
				if err := s.Response(respHeaders, []byte("answer"), respTrailers); err != nil {
					t.Fatal(err)
				}
				var local *wasmhost.LocalResponse
				o.respHeaders, o.respBody, o.resp, local = s.ResponseResult()
				o.local = local != nil
				if err := s.Done(); err != nil {
					t.Fatal(err)
				}
				o.calls = take()
				if !slices.Equal(h, hCopy) || h[:len(h)+1][len(h)] != sentinel {
					t.Errorf("the caller's header list changed: %v", h[:len(h)+1])
				}
				if !bytes.Equal(body, bodyCopy) || (len(tc.body) > 0 && body[:len(body)+1][len(body)] != '!') {
					t.Errorf("the caller's body changed: %q", body[:len(body)+1])
				}
				return o
			}
			want, got := perCallback(), whole()
			if !slices.Contains(want.calls, "proxy_on_request_headers") || !slices.Contains(want.calls, "proxy_on_log") {
				t.Fatalf("the per-callback drive made calls %v", want.calls)
			}
			// The stream ids differ; the call names and order may not.
			if !slices.Equal(got.calls, want.calls) {
				t.Errorf("calls %v, want %v", got.calls, want.calls)
			}
			for _, c := range []struct {
				name      string
				got, want [][2]string
			}{{"request headers", got.reqHeaders, want.reqHeaders}, {"response headers", got.respHeaders, want.respHeaders},
				{"response trailers", got.resp, want.resp}} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s %v, want %v", c.name, c.got, c.want)
				}
			}
			if !bytes.Equal(got.reqBody, want.reqBody) || !bytes.Equal(got.respBody, want.respBody) || got.local != want.local {
				t.Errorf("bodies %q %q local %v, want %q %q local %v", got.reqBody, got.respBody, got.local,
					want.reqBody, want.respBody, want.local)
			}
		})
	}
}
