package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/certfile"
	"github.com/maestro-ml/maestro/certs/setup"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// runCerts issues a workload certificate to files, or prints the trust
// bundle, from the built-in CA's state directory or from Vault: how a
// proxyless gRPC client or a test node gets its identity.
func runCerts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = "usage: maestro certs issue --id SPIFFE_ID --out DIR [flags] | maestro certs bundle [flags]"
	if len(args) == 0 || (args[0] != "issue" && args[0] != "bundle") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(stderr, usage)
			fmt.Fprintln(stderr, "  issue   write cert.pem, key.pem (0600) and ca.pem for one identity")
			fmt.Fprintln(stderr, "  bundle  print the trust bundle (PEM)")
			fmt.Fprintln(stderr, "Both take the issuer flags (--ca, --ca-dir, --trust-domain, --vault-*); see docs/certs.md.")
			return flag.ErrHelp
		}
		fmt.Fprintln(stderr, usage)
		return errUsage
	}
	what := args[0]
	fs := newFlagSet("certs "+what, stderr)
	var opts setup.Options
	opts.RegisterFlags(fs)
	id := fs.String("id", "", "SPIFFE `ID` to issue for, spiffe://<trust-domain>/ns/<ns>/sa/<sa> (issue)")
	out := fs.String("out", "", "`directory` for cert.pem, key.pem and ca.pem (issue)")
	ttl := fs.Duration("ttl", 24*time.Hour, "certificate lifetime to ask for (issue)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "maestro certs %s: unexpected arguments %q\n", what, fs.Args())
		return errUsage
	}
	log, err := telemetry.NewLogger(stderr, slog.LevelWarn, "text")
	if err != nil {
		return err
	}
	issuer, _, err := opts.NewIssuer(log)
	if err != nil {
		return err
	}
	if what == "bundle" {
		b, err := issuer.Bundle(ctx)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b.PEM())
		return err
	}
	if *id == "" || *out == "" {
		fmt.Fprintln(stderr, "maestro certs issue: --id and --out are required")
		return errUsage
	}
	sid, err := spiffe.Parse(*id)
	if err != nil {
		return fmt.Errorf("--id: %w", err)
	}
	c, err := issuer.Issue(ctx, certs.Request{ID: sid, TTL: *ttl})
	if err != nil {
		return err
	}
	if err := certfile.Write(*out, c); err != nil {
		return err
	}
	if c.Capped {
		fmt.Fprintf(stderr, "warning: the issuer granted less than the %s asked\n", *ttl)
	}
	fmt.Fprintf(stdout, "%s: serial %s, valid until %s, written to %s\n", sid, c.Serial(), c.NotAfter().UTC().Format(time.RFC3339), *out)
	return nil
}
