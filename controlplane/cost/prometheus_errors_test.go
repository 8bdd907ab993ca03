package cost

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestQueryPrometheusErrors(t *testing.T) {
	answer := func(body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if _, err := w.Write([]byte(body)); err != nil {
				t.Errorf("answer: %v", err)
			}
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	l.Close()
	tests := []struct {
		name, url, want string
	}{
		{"down", down, "prometheus " + down + ": Get"},
		{"query error", answer(`{"status":"error","errorType":"bad_data","error":"parse error"}`), `: parse error`},
		{"not a vector", answer(`{"status":"success","data":{"resultType":"matrix","result":[]}}`), `result type "matrix", want vector`},
		{"bad value", answer(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}`), `value x`},
		{"not json", answer(`<html>`), "decode answer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := QueryPrometheus(context.Background(), &http.Client{Timeout: 10 * time.Second}, tc.url, time.Minute, time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, _, err := QueryPrometheus(context.Background(), http.DefaultClient, down, 500*time.Millisecond, time.Now()); err == nil || !strings.Contains(err.Error(), "want at least 1s") {
		t.Errorf("sub-second window: error %v", err)
	}
}
