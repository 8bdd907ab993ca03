package wasmhost_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
	"github.com/maestro-ml/maestro/wasmfilter/wasmhost"
)

// TestAnswerTakenByAnotherWaiterResumesTheStream: a stream paused on its
// callout and a dispatcher (the gateway's, for plugin callouts) wait for
// answers at once; whichever takes the stream's answer, the stream sees
// that it was resumed instead of waiting for an answer that will not
// come. The dispatcher starts waiting first in every round, so it usually
// takes the answer.
func TestAnswerTakenByAnotherWaiterResumesTheStream(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "side")
	}))
	t.Cleanup(srv.Close)
	vm := newVM(t, wasmhost.Config{Clusters: map[string]wasmhost.Cluster{"backend": {Address: strings.TrimPrefix(srv.URL, "http://")}}})
	for round := range 20 {
		s, err := vm.NewStream()
		if err != nil {
			t.Fatal(err)
		}
		if a, err := s.RequestHeaders([][2]string{{":path", "/callout"}, {":method", "GET"}}, true); err != nil || a != pw.ActionPause {
			t.Fatalf("round %d: headers %v %v, want a pause on the callout", round, a, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		dispatched := make(chan error, 1)
		go func() { dispatched <- vm.AwaitCallouts(ctx) }()
		resumed := make(chan error, 1)
		go func() { resumed <- s.AwaitResume(ctx, false) }()
		release <- struct{}{}
		if err := <-resumed; err != nil {
			t.Fatalf("round %d: the stream was not resumed: %v", round, err)
		}
		if err := <-dispatched; err != nil {
			t.Fatalf("round %d: dispatcher: %v", round, err)
		}
		cancel()
		if got := s.RequestHeaderMap(); !hasHeader(got, "x-callout", "200 side") {
			t.Fatalf("round %d: request headers %q lack the callout's answer", round, got)
		}
		if err := s.Done(); err != nil {
			t.Fatal(err)
		}
	}
}

func hasHeader(h [][2]string, name, value string) bool {
	for _, kv := range h {
		if kv[0] == name && kv[1] == value {
			return true
		}
	}
	return false
}
