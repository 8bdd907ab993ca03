package archtest

import (
	"os"
	"strings"
	"testing"
)

// TestDockerContextKeepsSecretsOut: the image build context must not carry
// the built-in CA's keys, the demo's state or local binaries, and the image
// is one static stripped binary on a distroless base. Docker itself cannot
// run here, so the files are checked for the lines that promise this.
func TestDockerContextKeepsSecretsOut(t *testing.T) {
	data, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	patterns := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns[line] = true
		}
	}
	for _, want := range []string{".git", ".maestro", "**/.maestro", "maestro-up", "build", "bin", "maestro", "**/*.pem", "**/*.key"} {
		if !patterns[want] {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags="-s -w`, "FROM gcr.io/distroless/static", "USER 65532"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
