package xgboost

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/maestro-ml/maestro/inference/runtime/fixture"
)

// TestDemoModelInV2Layout rewrites the 1.7-trained demo models into the
// fields XGBoost 2.x writes (version 2.1, base_score as a vector string,
// iteration_indptr, size_leaf_vector "1") and checks they still replay
// XGBoost's own predictions: the layouts must mean the same model.
func TestDemoModelInV2Layout(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "examples", "models")
	for _, c := range []struct{ model, version string }{{"fraud", "1"}, {"churn", "2"}} {
		t.Run(c.model+"/"+c.version, func(t *testing.T) {
			var doc map[string]any
			if err := json.Unmarshal(mustRead(t, filepath.Join(dir, c.model, c.version, DefaultFile)), &doc); err != nil {
				t.Fatal(err)
			}
			doc["version"] = []int{2, 1, 0}
			learner := doc["learner"].(map[string]any)
			mp := learner["learner_model_param"].(map[string]any)
			mp["base_score"] = "[" + mp["base_score"].(string) + "]"
			model := learner["gradient_booster"].(map[string]any)["model"].(map[string]any)
			trees := model["trees"].([]any)
			groups := 1
			if n, err := strconv.Atoi(mp["num_class"].(string)); err == nil && n > 0 {
				groups = n
			}
			indptr := []int{0}
			for i := groups; i <= len(trees); i += groups {
				indptr = append(indptr, i)
			}
			model["iteration_indptr"] = indptr
			for _, tr := range trees {
				tr.(map[string]any)["tree_param"].(map[string]any)["size_leaf_vector"] = "1"
			}
			v2, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			fx, err := fixture.Load(filepath.Join(dir, "fixtures", c.model+"-v"+c.version+".json"))
			if err != nil {
				t.Fatal(err)
			}
			s := sig(fx.Inputs[0].Shape[1], fx.Outputs[0].Shape[1])
			s.Inputs[0].Name = fx.Inputs[0].Name
			s.Outputs[0].Name = fx.Outputs[0].Name
			m, err := New(v2, s)
			if err != nil {
				t.Fatal(err)
			}
			if v := m.Info().Version; v[0] != 2 {
				t.Fatalf("version %v", v)
			}
			got, err := m.Predict(context.Background(), fx.Inputs)
			if err != nil {
				t.Fatal(err)
			}
			if err := fixture.Compare(fx.Outputs[0], got[0], fx.Tolerance); err != nil {
				t.Error(err)
			}
		})
	}
}
