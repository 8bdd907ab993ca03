package router

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// listWriter is a ResponseWriter that also takes lists, as the h2
// server's does; it records which way a response came.
type listWriter struct {
	*httptest.ResponseRecorder
	listed            bool
	code              int
	headers, trailers [][2]string
	body              []byte
}

func (w *listWriter) WriteBuffered(code int, headers [][2]string, body []byte, trailers [][2]string) {
	w.listed, w.code, w.headers, w.body, w.trailers = true, code, headers, body, trailers
}

func TestWriteMessageLists(t *testing.T) {
	cases := []struct {
		name       string
		m          Message
		wantListed bool
		wantCode   int
		wantHdrs   [][2]string
	}{{
		name: "grpc answer goes as lists, hop-by-hop and length dropped",
		m: Message{Headers: [][2]string{{":status", "200"}, {"content-type", "application/grpc"}, {"connection", "x"},
			{"content-length", "9"}, {"x-a", "1"}}, Body: []byte("abc"), Trailers: [][2]string{{"grpc-status", "0"}}},
		wantListed: true, wantCode: 200,
		wantHdrs: [][2]string{{"content-type", "application/grpc"}, {"x-a", "1"}},
	}, {
		name:       "no trailers: the body's length is added",
		m:          Message{Headers: [][2]string{{":status", "404"}}, Body: []byte("abc")},
		wantListed: true, wantCode: 404,
		wantHdrs: [][2]string{{"content-length", "3"}},
	}, {
		name: "an upper-case name takes the map path",
		m:    Message{Headers: [][2]string{{":status", "200"}, {"X-Upper", "1"}}},
	}, {
		name: "a trailer declaration takes the map path",
		m:    Message{Headers: [][2]string{{":status", "200"}, {"trailer", "x-t"}}},
	}, {
		name: "an upper-case trailer takes the map path",
		m:    Message{Headers: [][2]string{{":status", "200"}}, Trailers: [][2]string{{"Grpc-Status", "0"}}},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := &listWriter{ResponseRecorder: httptest.NewRecorder()}
			code := writeMessage(w, &tc.m)
			if w.listed != tc.wantListed {
				t.Fatalf("listed = %v, want %v", w.listed, tc.wantListed)
			}
			if !tc.wantListed {
				if w.Code != code || w.Code != http.StatusOK {
					t.Fatalf("map path wrote %d, returned %d", w.Code, code)
				}
				return
			}
			if code != tc.wantCode || w.code != tc.wantCode {
				t.Fatalf("code %d (returned %d), want %d", w.code, code, tc.wantCode)
			}
			if !slices.Equal(w.headers, tc.wantHdrs) || !slices.Equal(w.trailers, tc.m.Trailers) || string(w.body) != string(tc.m.Body) {
				t.Fatalf("lists %q / %q body %q, want %q / %q body %q", w.headers, w.trailers, w.body, tc.wantHdrs, tc.m.Trailers, tc.m.Body)
			}
		})
	}
}

func TestReadAtMost(t *testing.T) {
	cases := []struct {
		in   string
		n    int64
		want string
	}{{"", 10, ""}, {"hello", 10, "hello"}, {"hello", 5, "hello"}, {"hello", 3, "hel"}, {string(make([]byte, 2000)), 1500, string(make([]byte, 1500))}}
	for _, tc := range cases {
		got, err := readAtMost(&oneByte{s: tc.in}, tc.n)
		if err != nil || string(got) != tc.want {
			t.Fatalf("readAtMost(%d bytes, %d) = %d bytes, %v; want %d bytes", len(tc.in), tc.n, len(got), err, len(tc.want))
		}
	}
}

// oneByte reads a byte at a time, the hardest case for a read loop.
type oneByte struct{ s string }

func (r *oneByte) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0], r.s = r.s[0], r.s[1:]
	return 1, nil
}
