package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"

	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/xds"
)

// exitError carries a process exit code for a failure already reported.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// ExitCode is read by run.
func (e *exitError) ExitCode() int { return e.code }

// runValidate checks policies without serving them and, with --output,
// prints what one node would receive.
func runValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", stderr, `Checks mesh policies: every problem is printed as file:line:col: kind "name": field: message,
and the exit code is 1 if there is any. With --output, prints the xDS resources the node
would receive from the control plane (private keys redacted).`,
		"-f PATH [-f PATH...] [--output json|yaml --node ID [--role R] [--service S]]")
	var paths stringsFlag
	fs.Var(&paths, "f", "policy `path` (file or directory); repeatable")
	output := fs.String("output", "", "print the node's xDS resources as `format` json or yaml")
	node := fs.String("node", "", "node `ID` for --output")
	role := fs.String("role", "", "node `role` for --output: gateway, sidecar or proxyless (the node's maestro.role metadata)")
	service := fs.String("service", "", "sidecar's `service` for --output (the node's maestro.service metadata)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(paths) == 0 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "maestro validate: give the policy with -f PATH (and no other arguments)")
		return errUsage
	}
	switch *output {
	case "", "json", "yaml":
	default:
		fmt.Fprintf(stderr, "maestro validate: --output %q: want json or yaml\n", *output)
		return errUsage
	}
	if *output != "" && *node == "" && *role == "" {
		fmt.Fprintln(stderr, "maestro validate: --output needs --node ID (and --role/--service unless the ID alone selects a group)")
		return errUsage
	}
	// Files the server would skip (a FIFO named like a policy) are named
	// here too, and never opened.
	ctx = policy.WithSkipReport(ctx, func(path, reason string) {
		fmt.Fprintf(stderr, "warning: %s: skipped: %s\n", path, reason)
	})
	// The same certificates and loader as the server, in dry run: the
	// issuer's settings are checked, but validating contacts no CA and
	// creates no CA state on disk.
	var (
		res   *xds.Resources
		group string
	)
	err := controlplane.WithCertificates(ctx, paths, controlplane.CertConfig{DryRun: true, Plaintext: true},
		func(ctx context.Context, c *controlplane.Certificates) (err error) {
			if *output == "" {
				_, _, err = c.Loader()(ctx, paths)
				return err
			}
			res, group, err = controlplane.Preview(ctx, c.Loader(), paths, model.NodeInfo{ID: *node, Role: model.Role(*role), Service: *service})
			return err
		})
	if err != nil {
		return report(stderr, err)
	}
	if *output == "" {
		fmt.Fprintln(stdout, "policy is valid")
		return nil
	}
	out, err := res.JSON()
	if err != nil {
		return err
	}
	if *output == "yaml" {
		if out, err = yaml.JSONToYAML(out); err != nil {
			return fmt.Errorf("render yaml: %w", err)
		}
		out = append([]byte("# node group "+group+"\n"), out...)
	} else {
		out = append(out, '\n')
	}
	_, err = stdout.Write(out)
	return err
}

// report prints every policy problem on its own line and returns an
// exit-code-1 error summarising them.
func report(stderr io.Writer, err error) error {
	var list policy.ErrorList
	if !errors.As(err, &list) {
		return &exitError{code: 1, msg: err.Error()}
	}
	for _, e := range list {
		fmt.Fprintln(stderr, e.Error())
	}
	noun := "problems"
	if len(list) == 1 {
		noun = "problem"
	}
	return &exitError{code: 1, msg: fmt.Sprintf("%d %s found", len(list), noun)}
}
