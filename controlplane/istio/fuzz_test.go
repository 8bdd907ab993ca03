package istio_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/istio"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// FuzzRender checks that every policy the loader accepts renders without
// error or panic into resources that decode strictly, whose filter
// configurations parse, and whose references resolve.
func FuzzRender(f *testing.F) {
	seeds, _ := filepath.Glob("../../examples/policies/*.yaml")
	seeds = append(seeds, demoPath)
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pm, err := policy.Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		rs, err := istio.Render(pm, istio.Options{})
		if err != nil {
			t.Fatalf("render a valid policy: %v", err)
		}
		out, err := istio.MarshalYAML(rs)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		checkReferences(t, decodeAll(t, out))
	})
}
