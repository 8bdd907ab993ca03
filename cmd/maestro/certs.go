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
	what, err := chooseSubcommand("certs", args, []subcommand{
		{"issue", "write cert.pem, key.pem (0600) and ca.pem for one identity"},
		{"bundle", "print the trust bundle (PEM)"},
	}, stderr)
	if err != nil {
		return err
	}
	var fs *flag.FlagSet
	var id, out *string
	var ttl *time.Duration
	var opts setup.Options
	if what == "issue" {
		fs = newFlagSet("certs issue", stderr, `Issues a certificate for one SPIFFE identity from the built-in CA or Vault and writes
cert.pem, key.pem (0600) and ca.pem to --out. The issuer flags are those of
maestro controlplane; see docs/certs.md.`, "--id SPIFFE_ID --out DIR [flags]")
		id = fs.String("id", "", "SPIFFE `ID` to issue for, spiffe://<trust-domain>/ns/<ns>/sa/<sa>")
		out = fs.String("out", "", "`directory` for cert.pem, key.pem and ca.pem")
		ttl = fs.Duration("ttl", 24*time.Hour, "certificate lifetime to ask for")
	} else {
		fs = newFlagSet("certs bundle", stderr, `Prints the trust bundle (PEM) of the built-in CA or of Vault: the roots a
workload trusts. The issuer flags are those of maestro controlplane; see docs/certs.md.`, "[flags]")
	}
	issuerFlags(fs, &opts)
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

// issuerFlags registers on fs the issuer flags of setup.Options that a
// one-shot command uses: not the rotation's (--cert-ttl, --cert-renew-at),
// which would duplicate --ttl or mean nothing here.
func issuerFlags(fs *flag.FlagSet, opts *setup.Options) {
	all := flag.NewFlagSet("", flag.ContinueOnError)
	opts.RegisterFlags(all)
	all.VisitAll(func(f *flag.Flag) {
		if f.Name != "cert-ttl" && f.Name != "cert-renew-at" {
			fs.Var(f.Value, f.Name, f.Usage)
		}
	})
}
