package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/slo"
)

// runSLO writes what operators load to watch the policy's objectives:
// Prometheus rules or a Grafana dashboard.
func runSLO(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	what, err := chooseSubcommand("slo", args, []subcommand{
		{"rules", "Prometheus recording and multi-window burn-rate alerting rules"},
		{"dashboard", "a Grafana dashboard: SLI, budget remaining and burn rates per objective"},
	}, stderr)
	if err != nil {
		return err
	}
	about := map[string]string{
		"rules":     "Writes Prometheus recording rules and multi-window burn-rate alerts for every\nobjective of the policy's routes (docs/slo.md).",
		"dashboard": "Writes a Grafana dashboard with the SLI, the budget remaining and the burn rates\nof every objective of the policy's routes (docs/slo.md).",
	}[what]
	fs := newFlagSet("slo "+what, stderr, about, "-f POLICY [-o FILE]")
	var files stringsFlag
	fs.Var(&files, "f", "policy file or directory (repeatable)")
	out := fs.String("o", "-", "output file, - for standard output")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "maestro slo: -f POLICY is required")
		return errUsage
	}
	mesh, err := policy.Load(ctx, files...)
	if err != nil {
		return err
	}
	objs := slo.FromPolicy(mesh)
	if len(objs) == 0 {
		return errors.New("the policy has no route with an slo section")
	}
	var data []byte
	if what == "rules" {
		data, err = slo.Rules(objs, slo.DefaultMetrics())
	} else {
		data, err = slo.Dashboard(mesh.Config.Metadata.Name, objs, slo.DefaultMetrics())
	}
	if err != nil {
		return err
	}
	if *out == "-" {
		_, err = stdout.Write(data)
		return err
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	fmt.Fprintf(stderr, "wrote %d objectives to %s\n", len(objs), *out)
	return nil
}
