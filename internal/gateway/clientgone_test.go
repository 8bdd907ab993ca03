package gateway_test

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestClientThatLeavesMidAnswer has clients walk away while a large answer
// streams to them. Envoy resets the upstream stream locally then: the
// request slot is freed and outlier detection does not count it against
// the host, so the one host of a cluster that ejects after a single 5xx
// keeps serving.
func TestClientThatLeavesMidAnswer(t *testing.T) {
	cp := startFakeCP(t)
	finished := make(chan struct{}, 8)
	big := startBackend(t, "big", func(_ int, w http.ResponseWriter, r *http.Request) {
		defer func() { finished <- struct{}{} }()
		if r.Header.Get("x-small") != "" {
			_, _ = w.Write([]byte("ok"))
			return
		}
		chunk := []byte(strings.Repeat("x", 32<<10))
		rc := http.NewResponseController(w)
		for range 512 { // 16 MiB, far past every buffer on the way
			if _, err := w.Write(chunk); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	})
	c := edsCluster(t, "big", false)
	c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(1), Interval: durationpb.New(10 * time.Second),
		BaseEjectionTime: durationpb.New(time.Minute), MaxEjectionPercent: wrapperspb.UInt32(100)}
	cp.set(t, "gw", resources(edgeListener(t), routeTable(prefixRoute("big", "/big", toCluster("big"))),
		[]*clusterv3.Cluster{c}, []*endpointv3.ClusterLoadAssignment{endpoints(t, "big", big.addr)}))
	gw := startGateway(t, "gw", cp.addr, nil)
	addr := gw.waitLive(t)

	const leavers = 3
	for i := range leavers {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte("GET /big HTTP/1.1\r\nHost: edge\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		// Take the status line and some of the body, then leave with a reset.
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("leaver %d: %v", i, err)
		}
		if res.StatusCode != http.StatusOK {
			t.Fatalf("leaver %d got %d, want the answer to start with 200", i, res.StatusCode)
		}
		if _, err := res.Body.Read(make([]byte, 64<<10)); err != nil {
			t.Fatalf("leaver %d: %v", i, err)
		}
		_ = conn.(*net.TCPConn).SetLinger(0)
		_ = conn.Close()
		select {
		case <-finished:
		case <-time.After(waitLimit):
			t.Fatalf("leaver %d: the upstream answer never ended after the client left", i)
		}
	}
	// The gateway frees a request's slot when it is done with the try, so
	// the gauge at 0 also means every outcome has been reported.
	waitMetric(t, gw, `envoy_cluster_upstream_rq_active{envoy_cluster_name="big"}`, 0)
	if n := gw.metric(t, `envoy_cluster_outlier_detection_ejections_enforced_total{envoy_cluster_name="big"}`); n != 0 {
		t.Errorf("ejections_enforced_total = %v after clients left, want 0", n)
	}
	res, body := get(t, http.DefaultClient, "http://"+addr+"/big", "x-small", "1")
	if res.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("after %d clients left got %d %q, want the host still serving 200 ok", leavers, res.StatusCode, body)
	}
}
