package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIstioRenderMatchesTheExample checks that the command writes what
// examples/istio/mesh.yaml holds, to standard output and to a directory.
func TestIstioRenderMatchesTheExample(t *testing.T) {
	want, err := os.ReadFile("../../examples/istio/mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"istio", "render", "-f", "../../examples/mesh.yaml"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if out.String() != string(want) {
		t.Error("stdout differs from examples/istio/mesh.yaml")
	}
	dir := filepath.Join(t.TempDir(), "out")
	out.Reset()
	if code := run(context.Background(), []string{"istio", "render", "-f", "../../examples/mesh.yaml", "-o", dir}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	got, err := os.ReadFile(filepath.Join(dir, "mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Error("written file differs from examples/istio/mesh.yaml")
	}
	file := filepath.Join(t.TempDir(), "istio.yml")
	if code := run(context.Background(), []string{"istio", "render", "-f", "../../examples/mesh.yaml", "-o", file}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if got, err := os.ReadFile(file); err != nil || string(got) != string(want) {
		t.Errorf("-o %s: %v, or the file differs from examples/istio/mesh.yaml", file, err)
	}
}

func TestIstioRenderOptions(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"istio", "render", "-f", "../../examples/mesh.yaml", "--cluster-domain", "corp.internal", "--grpc-port", "8081", "--root-namespace", "mesh-root"}
	if code := run(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"host: fraud.ml.svc.corp.internal", "outbound|8081|v1|fraud.ml.svc.corp.internal", "namespace: mesh-root"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestIstioUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"istio"}, 2, "Usage: maestro istio <render>"},
		{[]string{"istio", "apply"}, 2, "Usage: maestro istio <render>"},
		{[]string{"istio", "render"}, 2, "-f POLICY is required"},
		{[]string{"istio", "render", "--help"}, 0, "-cluster-domain"},
		{[]string{"istio", "render", "-f", "../../examples/mesh.yaml", "--http-port", "70000"}, 1, "--http-port 70000"},
		{[]string{"istio", "render", "-f", "missing.yaml"}, 1, "missing.yaml"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errOut)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %s)", code, tc.code, errOut.String())
			}
			if !strings.Contains(errOut.String()+out.String(), tc.want) {
				t.Errorf("output %q lacks %q", errOut.String()+out.String(), tc.want)
			}
		})
	}
}
