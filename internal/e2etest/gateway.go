package e2etest

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/internal/gateway"
	"github.com/maestro-ml/maestro/internal/gateway/xdsclient"
)

// WaitLimit bounds every wait on a condition; generous for a loaded machine.
const WaitLimit = 20 * time.Second

// Gateway is a built-in gateway (`maestro gateway`) started for a test.
type Gateway struct {
	GW *gateway.Gateway
	// Admin is the admin listener's address (/ready, /stats/prometheus,
	// /config_dump).
	Admin string
	// Events receives the gateway's xDS events; a full channel drops them.
	Events chan xdsclient.Event
}

// StartGateway runs a gateway for node against xdsAddr, its listener
// "edge" on a free loopback port, and waits for its admin listener; mod,
// when set, completes the configuration. It stops at the test's end; an
// error it ends with fails the test.
func StartGateway(t testing.TB, node, xdsAddr string, mod func(*gateway.Config)) *Gateway {
	t.Helper()
	ready := make(chan net.Addr, 1)
	g := &Gateway{Events: make(chan xdsclient.Event, 256)}
	cfg := gateway.Config{
		NodeID: node, XDSAddr: xdsAddr, AdminAddr: "127.0.0.1:0", BindHost: "127.0.0.1",
		BindPort: map[string]int{"edge": 0},
		Ready:    func(a net.Addr) { ready <- a },
		OnXDS: func(ev xdsclient.Event) {
			select {
			case g.Events <- ev:
			default:
			}
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gw, err := gateway.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	g.GW = gw
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway: %v", err)
		}
	})
	select {
	case a := <-ready:
		g.Admin = a.String()
	case err := <-done:
		t.Fatalf("gateway ended: %v", err)
	case <-time.After(WaitLimit):
		t.Fatal("gateway admin not ready")
	}
	return g
}

// WaitLive polls /ready until LIVE and returns the edge listener's address.
func (g *Gateway) WaitLive(t testing.TB) string {
	t.Helper()
	deadline := time.Now().Add(WaitLimit)
	for backoff := 5 * time.Millisecond; ; backoff = min(backoff*2, 200*time.Millisecond) {
		res, err := http.Get("http://" + g.Admin + "/ready")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				if a, ok := g.GW.ListenerAddr("edge"); ok {
					return a.String()
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not LIVE within %v", WaitLimit)
		}
		time.Sleep(backoff) // polling a condition, bounded by deadline
	}
}

// Metric returns the value of one series of /stats/prometheus, the line
// starting with prefix (name and labels as printed), or 0 when absent.
func (g *Gateway) Metric(t testing.TB, prefix string) float64 {
	t.Helper()
	for _, line := range strings.Split(g.Scrape(t), "\n") {
		if strings.HasPrefix(line, prefix+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(line[len(prefix):]), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return v
		}
	}
	return 0
}

// Scrape returns the gateway's /stats/prometheus.
func (g *Gateway) Scrape(t testing.TB) string {
	t.Helper()
	res, err := http.Get("http://" + g.Admin + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// WaitMetric polls until series is want, bounded by WaitLimit.
func (g *Gateway) WaitMetric(t testing.TB, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(WaitLimit)
	for g.Metric(t, series) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s never became %v", series, want)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded
	}
}
