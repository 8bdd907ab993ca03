package adminstatus

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFetch(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/good/debug/status", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"version": "abc", "routes": [{"name": "churn", "adaptive": true}], "rollouts": [{"route": "churn", "phase": "promoted", "weight": 100}], "nodes": []}`))
	})
	mux.HandleFunc("/failing/debug/status", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	mux.HandleFunc("/garbled/debug/status", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"version": `))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	doc, err := Fetch(context.Background(), srv.Client(), srv.URL+"/good/")
	if err != nil {
		t.Fatal(err)
	}
	if doc.Version != "abc" || len(doc.Routes) != 1 || !doc.Routes[0].Adaptive || len(doc.Rollouts) != 1 || doc.Rollouts[0].Weight != 100 {
		t.Errorf("document %+v", doc)
	}
	for name, tc := range map[string]struct{ admin, want string }{
		"server error":     {host + "/failing", "HTTP 500: boom"},
		"not the document": {srv.URL + "/garbled", "/garbled/debug/status: unexpected end of JSON input"},
		"no URL":           {"http://[::1", "admin address"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Fetch(context.Background(), srv.Client(), tc.admin); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
