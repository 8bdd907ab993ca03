package closedloop

import (
	"context"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

func TestInferenceSignalsFollowVersionLabels(t *testing.T) {
	const text = `apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud}
spec:
  versions:
    - {name: v1, endpoints: [{address: 127.0.0.1, port: 9001}]}
    - {name: canary, labels: {model: fraud-xgb, modelVersion: "7"}, endpoints: [{address: 127.0.0.1, port: 9002}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud}
spec:
  service: fraud
  split: [{version: v1, weight: 100}]
`
	pm, err := policy.Parse("p.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(Config{Signals: SignalsInference})
	if err != nil {
		t.Fatal(err)
	}
	l.Tick(context.Background(), pm)
	sig := l.signals()
	r := pm.Route("fraud")
	for version, want := range map[string]string{
		"v1":     `maestro_inference_requests_total{model="fraud",version="1"}`,
		"canary": `maestro_inference_requests_total{model="fraud-xgb",version="7"}`,
	} {
		if got := sig(r, "fraud", version).Requests.String(); got != want {
			t.Errorf("version %s judged on %s, want %s", version, got, want)
		}
	}
	if _, err := New(Config{Signals: "cpu"}); err == nil {
		t.Error("an unknown signal set was accepted")
	}
}
