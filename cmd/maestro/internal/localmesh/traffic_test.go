package localmesh

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/oipclient"
)

// TestDemoRequestsAreAnswered: the request the demo traffic builds from a
// demo model's config.yaml is one its server answers, through the same
// client package `maestro predict` uses.
func TestDemoRequestsAreAnswered(t *testing.T) {
	models := filepath.Join(inferencetest.ModuleRoot(t), "examples", "models")
	srv := inferencetest.Start(t, inferencetest.Options{ModelDir: models})
	client := oipclient.NewGRPC(srv.Conn(t))
	for _, model := range []string{"fraud", "fraud-logistic", "churn"} {
		t.Run(model, func(t *testing.T) {
			req, err := demoRequest(models, model)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := client.Infer(ctx, req.model, "", req.body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.ModelName != model || len(resp.Outputs) == 0 {
				t.Fatalf("response = %+v", resp)
			}
		})
	}
}
