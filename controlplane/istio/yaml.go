package istio

import (
	"bytes"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// document is a Kubernetes object as written: the spec is the protojson
// form of the istio.io/api message, the form Istio's CRDs take.
type document struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   metadata        `json:"metadata"`
	Spec       json.RawMessage `json:"spec"`
}

type metadata struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// ManagedByLabel marks every rendered object, so operators can select
// (and prune) what Maestro rendered.
const ManagedByLabel = "app.kubernetes.io/managed-by"

// MarshalYAML writes resources as one multi-document YAML stream, keys
// sorted, so the same resources always give the same bytes.
func MarshalYAML(rs []Resource) ([]byte, error) {
	var buf bytes.Buffer
	for i, r := range rs {
		spec, err := protojson.Marshal(r.Spec)
		if err != nil {
			return nil, fmt.Errorf("%s %s/%s: %w", r.Kind, r.Namespace, r.Name, err)
		}
		doc, err := json.Marshal(document{
			APIVersion: r.APIVersion, Kind: r.Kind, Spec: spec,
			Metadata: metadata{Name: r.Name, Namespace: r.Namespace, Labels: map[string]string{ManagedByLabel: "maestro"}},
		})
		if err != nil {
			return nil, fmt.Errorf("%s %s/%s: %w", r.Kind, r.Namespace, r.Name, err)
		}
		y, err := yaml.JSONToYAML(doc)
		if err != nil {
			return nil, fmt.Errorf("%s %s/%s: %w", r.Kind, r.Namespace, r.Name, err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(y)
	}
	return buf.Bytes(), nil
}
