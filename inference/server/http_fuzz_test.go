package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime/builtin"
)

// FuzzHTTPInfer sends arbitrary bodies to the REST inference endpoint of
// the demo models: whatever arrives, the server answers 200 or a 4xx with a
// JSON error, never a 5xx, never a panic.
func FuzzHTTPInfer(f *testing.F) {
	s, err := New(Config{Models: repository.Options{Dir: filepath.Join("..", "..", "examples", "models"), Registry: builtin.Registry()}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(s.closeUnserved)
	h := s.routes(false)
	row := `[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1,1.1,1.2,1.3,1.4,1.5,1.6,1.7,1.8,1.9,2,2.1,2.2,2.3,2.4,2.5,2.6,2.7,2.8,2.9,3]`
	f.Add("fraud", `{"inputs":[{"name":"features","shape":[1,30],"datatype":"FP32","data":`+row+`}]}`)
	f.Add("fraud-logistic", `{"inputs":[{"name":"features","shape":[1,30],"datatype":"FP32","data":[`+row+`]}],"outputs":[{"name":"probability"}]}`)
	f.Add("churn", `{"inputs":[{"name":"features","shape":[1,12],"datatype":"FP32","data":[1,2,3,4,5,6,7,8,9,10,11,null]}]}`)
	f.Add("recommendations", `{"inputs":[{"name":"user_id","shape":[2,1],"datatype":"INT64","data":[100898,-1]}]}`)
	f.Add("fraud", `{"inputs":[{"name":"features","shape":[0,30],"datatype":"FP32","data":[]}]}`)
	f.Add("fraud", `{"inputs":[{"name":"features","shape":[1024,30],"datatype":"FP32","data":[1]}]}`)
	f.Add("nope", `{}`)
	f.Fuzz(func(t *testing.T, model, body string) {
		// Route through the mux; names that cannot form a path ask for "x".
		path := "/v2/models/x/infer"
		if validPathSegment(model) {
			path = "/v2/models/" + model + "/infer"
		}
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewBufferString(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("model %q body %q: status %d %s", model, body, rec.Code, rec.Body.String())
		}
		if rec.Code != http.StatusOK {
			var e struct{ Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("status %d without a JSON error: %q", rec.Code, rec.Body.String())
			}
		}
	})
}

func validPathSegment(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
