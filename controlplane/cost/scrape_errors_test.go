package cost

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestScrapeErrors(t *testing.T) {
	serve := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			if _, err := w.Write([]byte(body)); err != nil {
				t.Errorf("answer: %v", err)
			}
		}))
		t.Cleanup(srv.Close)
		return srv.URL + "/metrics"
	}
	tests := []struct {
		name, url, want string
	}{
		{"not found", serve(http.StatusNotFound, ""), "status 404 Not Found"},
		{"not the text format", serve(http.StatusOK, "maestro_inference_model_cpu_seconds_total{model=\"a\" 1\n"), "parse metrics"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Scrape(context.Background(), &http.Client{Timeout: 10 * time.Second}, Target{URL: tc.url})
			if err == nil || !strings.Contains(err.Error(), "scrape "+tc.url) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to name %s and contain %q", err, tc.url, tc.want)
			}
		})
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# TYPE maestro_inference_model_cpu_seconds_total counter
maestro_inference_model_cpu_seconds_total{model="fraud",version="2"} 1.5
# TYPE maestro_inference_model_predictions_total counter
maestro_inference_model_predictions_total{model="fraud",version="2"} 300
maestro_inference_model_predictions_total{model="churn",version="1"} 7
# TYPE maestro_inference_model_memory_bytes gauge
maestro_inference_model_memory_bytes{model="fraud",version="2"} 80200
# TYPE go_sched_gomaxprocs_threads gauge
go_sched_gomaxprocs_threads 4
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.25
`
	s, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[MV]Meters{
		{"fraud", "2"}: {CPUSeconds: 1.5, Predictions: 300, MemoryBytes: 80200, Loaded: true},
		// Evicted: its counters remain, its memory series is gone.
		{"churn", "1"}: {Predictions: 7},
	}
	if len(s.Models) != len(want) || s.Cores != 4 || s.ProcessCPU != 12.25 {
		t.Fatalf("sample %+v, want models %+v, 4 cores, 12.25 process CPU", s, want)
	}
	for k, w := range want {
		if s.Models[k] != w {
			t.Errorf("%v: %+v, want %+v", k, s.Models[k], w)
		}
	}
}
