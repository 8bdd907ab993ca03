package main

import (
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/inference/tensor"
)

// TestPredictPrintsEachMembersContribution: an answer the fanout filter
// combined is printed with its strategy, each member's scores and latency,
// the members left out, then the combined outputs.
func TestPredictPrintsEachMembersContribution(t *testing.T) {
	resp := &tensor.JSONResponse{ModelName: "fraud-ensemble", Parameters: map[string]any{
		"fanout_strategy":      "weighted_mean",
		"fanout_answered":      "fraud.v1,fraud.v2",
		"fanout_latency_ms":    "fraud.logistic=300.000,fraud.v1=1.250,fraud.v2=2.500",
		"fanout_missing":       "fraud.logistic (timeout after 300ms)",
		"fanout_member_scores": "fraud.v1=0.25;fraud.v2=0.75",
	}, Outputs: []tensor.JSONOutput{{Name: "output", Datatype: "FP32", Shape: []int64{1, 1}, Data: []byte("[0.5833]")}}}
	var b strings.Builder
	if err := printOutputs(&b, resp); err != nil {
		t.Fatal(err)
	}
	want := `model fraud-ensemble
ensemble weighted_mean of fraud.v1,fraud.v2
  member fraud.v1: 0.25 (1.250 ms)
  member fraud.v2: 0.75 (2.500 ms)
  missing: fraud.logistic (timeout after 300ms)
combined:
output FP32 [1 1]
  0.5833
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
