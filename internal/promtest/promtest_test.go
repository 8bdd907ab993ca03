package promtest

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/maestro-ml/maestro/internal/telemetry"
)

func TestScrapesAndQueriesARealTarget(t *testing.T) {
	reg := telemetry.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "maestro_test_events_total", Help: "events"})
	reg.MustRegister(c)
	c.Add(42)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: telemetry.MetricsHandler(reg)}
	go func() { _ = srv.Serve(l) }() // http.ErrServerClosed once Close runs
	t.Cleanup(func() { srv.Close() })

	p := Start(t, Target{Job: "unit", Addr: l.Addr().String()})
	res := p.WaitFor(t, `maestro_test_events_total{job="unit"}`, 20*time.Second, func(s []Sample) bool {
		return len(s) == 1 && s[0].Value == 42
	})
	if res[0].Labels["instance"] != l.Addr().String() {
		t.Errorf("instance label %q, want %q", res[0].Labels["instance"], l.Addr())
	}
	if _, err := p.Query(t.Context(), "rate(("); err == nil {
		t.Error("a malformed query returned no error")
	}
}
