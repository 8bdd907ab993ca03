package gateway

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/maestro-ml/maestro/internal/gateway/router"
	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// A done wasmStream serves a later stream: the route of the stream before
// must never be what the next one's filter reads, neither before its
// request nor in it. The probe module copies the route_name property into
// x-route-name.
func TestReusedWasmStreamStartsClean(t *testing.T) {
	file := filepath.Join(t.TempDir(), "probe.wasm")
	if err := os.WriteFile(file, wasmtest.Build(t, "github.com/maestro-ml/maestro/wasmfilter/wasmhost/testdata/probe"), 0o644); err != nil {
		t.Fatal(err)
	}
	ws := newWasmState(slog.New(slog.DiscardHandler), "")
	ctx := context.Background()
	t.Cleanup(func() { ws.close(ctx) })
	f, err := ws.load(ctx, &xdsconfig.WasmFilter{Name: "probe", LocalFile: file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	wf := f.(*wasmFilter)
	routeOf := func(route string) (*wasmStream, string) {
		t.Helper()
		fs, err := wf.NewStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s := fs.(*wasmStream)
		if v, ok := s.property("route_name"); ok {
			t.Fatalf("a new stream's route_name is %q before its request", v)
		}
		req := &router.Message{Headers: [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "a"}}}
		if lr, err := s.OnRequest(ctx, req, route); err != nil || lr != nil {
			t.Fatalf("OnRequest: %v %v", lr, err)
		}
		got, _ := req.Get("x-route-name")
		s.Done()
		return s, got
	}
	// sync.Pool may drop a stream (the race detector drops some on
	// purpose): go on until one has been reused, bounded.
	reused := false
	for i := 0; i < 200 && !reused; i++ {
		first, got := routeOf("route-a")
		if got != "route-a" {
			t.Fatalf("the filter saw route %q, want route-a", got)
		}
		second, got := routeOf("")
		if got != "" {
			t.Fatalf("a stream with no route saw %q", got)
		}
		reused = first == second
	}
	if !reused {
		t.Fatal("no stream was reused in 200 tries")
	}
}
