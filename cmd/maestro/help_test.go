package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryHelpHasOneLayout: each command and subcommand answers --help
// with exit 0 and the same layout (Usage: maestro NAME ..., a description,
// then Flags:), and lists only its own flags.
func TestEveryHelpHasOneLayout(t *testing.T) {
	t.Parallel()
	type page struct {
		args    []string
		name    string   // what Usage names
		lacks   []string // flags that belong to another command
		hasFlag bool
	}
	var pages []page
	for _, c := range commands() {
		switch c.name {
		case "certs":
			pages = append(pages,
				page{args: []string{"certs", "issue", "--help"}, name: "certs issue", hasFlag: true, lacks: []string{"-cert-ttl", "-cert-renew-at"}},
				page{args: []string{"certs", "bundle", "--help"}, name: "certs bundle", hasFlag: true, lacks: []string{"-id ", "-out ", "-ttl ", "-cert-ttl"}})
		case "slo":
			pages = append(pages, page{args: []string{"slo", "rules", "--help"}, name: "slo rules", hasFlag: true},
				page{args: []string{"slo", "dashboard", "--help"}, name: "slo dashboard", hasFlag: true})
		case "istio":
			pages = append(pages, page{args: []string{"istio", "render", "--help"}, name: "istio render", hasFlag: true})
		case "version":
			pages = append(pages, page{args: []string{"version", "--help"}, name: "version"})
		default:
			pages = append(pages, page{args: []string{c.name, "--help"}, name: c.name, hasFlag: true})
		}
	}
	for _, group := range []string{"certs", "slo", "istio"} {
		pages = append(pages, page{args: []string{group, "--help"}, name: group})
	}
	for _, p := range pages {
		t.Run(strings.Join(p.args, " "), func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), p.args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr.String())
			}
			out := stderr.String()
			if !strings.HasPrefix(out, "Usage: maestro "+p.name) {
				t.Errorf("help does not start with %q:\n%s", "Usage: maestro "+p.name, out)
			}
			if !strings.Contains(out, "\n\n") {
				t.Errorf("help has no description paragraph:\n%s", out)
			}
			if p.hasFlag && !strings.Contains(out, "\nFlags:\n") {
				t.Errorf("help lists no Flags: section:\n%s", out)
			}
			for _, f := range p.lacks {
				if strings.Contains(out, "\n  "+f) {
					t.Errorf("help lists %s, which is not this command's flag:\n%s", f, out)
				}
			}
		})
	}
}

// TestValidatePrintsEachProblemOnce: a rejected policy's problems are
// printed once each, then one summary line.
func TestValidatePrintsEachProblemOnce(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	data, err := os.ReadFile("../../examples/mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, bytes.Replace(data, []byte("weight: 90"), []byte("weight: 95"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"validate", "-f", bad}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr.String())
	}
	out := stdout.String() + stderr.String()
	if n := strings.Count(out, "weights sum to 105"); n != 1 {
		t.Errorf("the problem is printed %d times, want once:\n%s", n, out)
	}
	if n := strings.Count(out, "1 problem found"); n != 1 {
		t.Errorf("the summary is printed %d times, want once:\n%s", n, out)
	}
}
