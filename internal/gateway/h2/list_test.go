package h2

import (
	"net/http"
	"slices"
	"testing"

	"golang.org/x/net/http2"
)

// listHandler records the header list it is given and answers with
// WriteBuffered.
type listHandler struct {
	got      chan [][2]string
	headers  [][2]string
	body     []byte
	trailers [][2]string
}

func (h *listHandler) ServeHTTP(http.ResponseWriter, *http.Request) {
	panic("ServeHTTP called on a HeaderListHandler")
}

func (h *listHandler) ServeHeaderList(w http.ResponseWriter, r *http.Request, fields [][2]string) {
	if r.Header != nil {
		panic("r.Header built for a HeaderListHandler")
	}
	h.got <- fields
	w.(interface {
		WriteBuffered(int, [][2]string, []byte, [][2]string)
	}).WriteBuffered(http.StatusOK, h.headers, h.body, h.trailers)
}

// fieldsOf is a header block without the date, which changes.
func fieldsOf(f *http2.MetaHeadersFrame) [][2]string {
	var out [][2]string
	for _, hf := range f.Fields {
		if hf.Name != "date" {
			out = append(out, [2]string{hf.Name, hf.Value})
		}
	}
	return out
}

func TestServerHeaderListHandler(t *testing.T) {
	cases := []struct {
		name      string
		h         listHandler
		wantHead  [][2]string
		wantBody  string
		wantTrail [][2]string
	}{{
		name: "grpc with trailers",
		h: listHandler{headers: [][2]string{{"content-type", "application/grpc"}, {"x-a", "1"}, {"x-a", "2"}},
			body: []byte("reply"), trailers: [][2]string{{"grpc-status", "0"}, {"grpc-message", "ok"}}},
		wantHead:  [][2]string{{":status", "200"}, {"content-type", "application/grpc"}, {"x-a", "1"}, {"x-a", "2"}},
		wantBody:  "reply",
		wantTrail: [][2]string{{"grpc-status", "0"}, {"grpc-message", "ok"}},
	}, {
		name: "whole body, sniffed type, connection header dropped",
		h:    listHandler{headers: [][2]string{{"connection", "close"}, {"content-length", "5"}}, body: []byte("hello")},
		wantHead: [][2]string{{":status", "200"}, {"content-length", "5"},
			{"content-type", "text/plain; charset=utf-8"}},
		wantBody: "hello",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.h.got = make(chan [][2]string, 1)
			addr, _ := serve(t, &tc.h, ServerConfig{})
			p := dialPeer(t, addr)
			p.headers(1, true, append(get("/x"), "x-first", "a", "host", "h", "x-first", "b", "te", "trailers")...)
			want := [][2]string{{"x-first", "a"}, {"host", "h"}, {"x-first", "b"}, {"te", "trailers"}}
			if got := <-tc.h.got; !slices.Equal(got, want) {
				t.Fatalf("handler got %q, want %q", got, want)
			}
			h := p.next(http2.FrameWindowUpdate, http2.FrameSettings).(*http2.MetaHeadersFrame)
			if got := fieldsOf(h); !slices.Equal(got, tc.wantHead) {
				t.Fatalf("headers %q, want %q", got, tc.wantHead)
			}
			var body []byte
			end := h.StreamEnded()
			for !end {
				switch f := p.next(http2.FrameWindowUpdate, http2.FrameSettings).(type) {
				case *http2.DataFrame:
					body = append(body, f.Data()...)
					end = f.StreamEnded()
				case *http2.MetaHeadersFrame:
					if got := fieldsOf(f); !slices.Equal(got, tc.wantTrail) || !f.StreamEnded() {
						t.Fatalf("trailers %q end=%v, want %q", got, f.StreamEnded(), tc.wantTrail)
					}
					tc.wantTrail, end = nil, true
				}
			}
			if string(body) != tc.wantBody || tc.wantTrail != nil {
				t.Fatalf("body %q, want %q; trailers left unseen %q", body, tc.wantBody, tc.wantTrail)
			}
		})
	}
}
