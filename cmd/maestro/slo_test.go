package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestSLORulesFromTheExamplePolicyPassPromtool(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"slo", "rules", "-f", "../../examples/mesh.yaml"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"maestro-slo-fraud-availability", "maestro-slo-fraud-latency-p99-250ms", "MaestroSLOErrorBudgetBurn"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("rules lack %q", want)
		}
	}
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian package prometheus; .ci/run installs it): %v", err)
	}
	msg, err := exec.Command(bin, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, msg)
	}
	// promtool prints lint findings ("duplicate rules") with exit status 0.
	text := strings.ToLower(strings.ReplaceAll(string(msg), path, "RULES"))
	for _, bad := range []string{"failed", "lint", "duplicate", "warning", "error"} {
		if strings.Contains(text, bad) {
			t.Fatalf("promtool check rules printed %q:\n%s", bad, msg)
		}
	}
}

func TestSLODashboardWritesAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dash.json")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"slo", "dashboard", "-f", "../../examples/mesh.yaml", "-o", path}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []any  `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if d.Title != "Maestro SLOs: demo" || len(d.Panels) == 0 {
		t.Errorf("dashboard %q with %d panels", d.Title, len(d.Panels))
	}
}

func TestSLOUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"slo"}, {"slo", "graphs"}, {"slo", "rules"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)", args, code)
		}
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"slo", "rules", "-f", "does-not-exist.yaml"}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "does-not-exist.yaml") {
		t.Errorf("missing policy: exit %d, stderr %q", code, errOut.String())
	}
}
