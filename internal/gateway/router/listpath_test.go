package router

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"
)

// The list path takes a request only when the map path would send the
// same method and path: a path the map path's URL would change (an
// escape, a fragment, a space, non-ASCII) or refuse goes by the map path.
func TestListPathTakesOnlyUnchangedPaths(t *testing.T) {
	cases := []struct {
		method, path string
		want         bool
	}{
		{"POST", "/inference.GRPCInferenceService/ModelInfer", true},
		{"POST", "/v2/models/fraud/infer", true},
		{"GET", "/v2/health/ready?verbose=1&x=a:b", true},
		{"GET", "/a%2Fb", false},
		{"GET", "/a#frag", false},
		{"GET", "/a b", false},
		{"GET", "/caf\u00e9", false},
		{"GET", "//double", false},
		{"GET", "*", false},
		{"GET", "", false},
		{"", "/", false},
		{"BAD METHOD", "/", false},
	}
	for _, tc := range cases {
		got := validMethod(tc.method) && validPath(tc.path)
		if got != tc.want {
			t.Errorf("%q %q: list path %v, want %v", tc.method, tc.path, got, tc.want)
		}
		if !got {
			continue
		}
		// What the list path sends is what the map path's URL would.
		req, err := http.NewRequest(tc.method, "http://h:1"+tc.path, nil)
		if err != nil {
			t.Fatalf("%q %q: the map path refuses it: %v", tc.method, tc.path, err)
		}
		if uri := req.URL.RequestURI(); uri != tc.path {
			t.Errorf("%q: the map path sends %q", tc.path, uri)
		}
		if _, err := url.ParseRequestURI(tc.path); err != nil {
			t.Errorf("%q: %v", tc.path, err)
		}
	}
}

// The timeout header's text is kept for the last timeout: each timeout
// must still get its own value, whatever came before.
func TestMillisFollowsTheTimeout(t *testing.T) {
	var h Handler
	for _, d := range []time.Duration{2 * time.Second, 2 * time.Second, 150 * time.Millisecond, 2 * time.Second, 1500 * time.Microsecond} {
		if got, want := h.millis(d), strconv.FormatInt(d.Milliseconds(), 10); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}
