package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/certs/secretauth"
	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/certs/tokenreview"

	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// runControlplane serves the policy at -f over xDS until ctx ends,
// reloading it on every change.
func runControlplane(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("controlplane", stderr, `Serves the mesh policy (files or directories) to Envoy and proxyless gRPC clients
over xDS v3 (ADS SotW and delta, and the per-type services), reloading it on change.
Metrics are on http://ADMIN/metrics, node status on http://ADMIN/debug/status.`,
		"-f PATH [-f PATH...] [flags]")
	var paths stringsFlag
	fs.Var(&paths, "f", "policy `path` (file or directory); repeatable")
	xdsAddr := fs.String("xds-addr", controlplane.DefaultXDSAddr, "xDS gRPC listen `address`")
	var xdsSANs stringsFlag
	fs.Var(&xdsSANs, "xds-san", "extra DNS `name` or IP clients dial the xDS port by, added to the control plane's certificate (repeatable)")
	adminAddr := fs.String("admin-addr", controlplane.DefaultAdminAddr, "admin HTTP listen `address` (/metrics, /healthz, /readyz, /debug/status)")
	insecure := fs.Bool("insecure", false, "serve xDS in plaintext (development only): certificates go only to clients with a bootstrap token unless --insecure-serve-secrets; default mTLS with the control plane's own certificate")
	insecureSecrets := fs.Bool("insecure-serve-secrets", false, "with --insecure, serve certificates and private keys to any client (loopback development only)")
	tokenReview := fs.Bool("k8s-token-review", false, "accept Kubernetes service-account tokens (authorization: Bearer TOKEN) checked with the API server's TokenReview, in-cluster: the account is the node's identity (docs/certs.md)")
	var audiences stringsFlag
	fs.Var(&audiences, "k8s-token-audience", "with --k8s-token-review, an `audience` the token must be for (repeatable; default the API server's)")
	tokensFile := fs.String("bootstrap-tokens", "", "`file` of bootstrap tokens, one a line: TOKEN SPIFFE_ID...; a node presenting one (authorization: Bearer TOKEN) gets those identities' certificates before it has its own (docs/certs.md)")
	auditPath := fs.String("audit-log", "", "append the security audit trail (issuance, rotation, refusals, policy changes) as JSON lines to `file`")
	loopFlags := addLoopFlags(fs)
	logs := addLogFlags(fs, "info")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(paths) == 0 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "maestro controlplane: give the policy with -f PATH (and no other arguments)")
		return errUsage
	}
	log, tracing, flush, err := logs.observe(ctx, stderr, "maestro-controlplane")
	if err != nil {
		return err
	}
	defer flush()
	reg := telemetry.NewRegistry()
	auditLog, closeAudit, err := openAudit(*auditPath)
	if err != nil {
		return err
	}
	defer closeAudit()
	loop, err := loopFlags.open(log, auditLog)
	if err != nil {
		return err
	}
	if *insecureSecrets && !*insecure {
		fmt.Fprintln(stderr, "maestro controlplane: --insecure-serve-secrets needs --insecure")
		return errUsage
	}
	tokens, err := readTokens(*tokensFile)
	if err != nil {
		return err
	}
	var reviewer secretauth.TokenReviewer
	if *tokenReview {
		rc, err := tokenreview.InCluster(tokenreview.Config{Audiences: audiences})
		if err != nil {
			return fmt.Errorf("--k8s-token-review: %w", err)
		}
		if reviewer, err = tokenreview.New(rc); err != nil {
			return fmt.Errorf("--k8s-token-review: %w", err)
		}
	}
	// The issuer comes from the policy's spec.ca, read once at start.
	certCfg := controlplane.CertConfig{Logger: log, Registerer: reg, Audit: auditLog,
		XDSNames: controlplane.XDSNames(*xdsAddr, xdsSANs), Plaintext: *insecure, BootstrapTokens: tokens,
		TokenReviewer: reviewer}
	err = controlplane.WithCertificates(ctx, paths, certCfg, func(ctx context.Context, certs *controlplane.Certificates) error {
		cfg := controlplane.Config{
			Loop:           loop,
			ObserveAddr:    *loopFlags.observeAddr,
			ObservePercent: *loopFlags.observePercent,
			Paths:          paths,
			Load:           certs.Loader(),
			Certs:          certs,
			XDSAddr:        *xdsAddr,
			AdminAddr:      *adminAddr,
			Insecure:       *insecure,
			Logger:         log,

			InsecureSecrets: *insecureSecrets,
			Registry:        reg,
			Tracer:          tracing.Provider,
			OnReload: func(version string, err error) {
				ev := audit.Event{Kind: audit.PolicyChanged, Details: map[string]string{"version": version}}
				if err != nil {
					ev.Error = err.Error()
				}
				if aerr := auditLog.Record(ctx, ev); aerr != nil {
					log.Warn("audit log", "error", aerr)
				}
			},
		}
		if !*insecure {
			cfg.GRPCOptions = []grpc.ServerOption{grpc.Creds(credentials.NewTLS(certs.ServerTLS()))}
			log.Info("xDS served over mTLS", "identity", certs.Self().String())
		}
		return controlplane.Run(ctx, cfg)
	})
	if err != nil {
		// The first load's problems are already one a line in err.
		return err
	}
	return nil
}

// readTokens reads the --bootstrap-tokens file; no path means none.
func readTokens(path string) (map[string][]spiffe.ID, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--bootstrap-tokens: %w", err)
	}
	tokens, err := secretauth.ParseTokens(path, data)
	if err != nil {
		return nil, fmt.Errorf("--bootstrap-tokens: %w", err)
	}
	return tokens, nil
}

// openAudit opens the audit trail for appending (0600: it names
// identities and peers); no path means no audit trail.
func openAudit(path string) (*audit.Log, func(), error) {
	if path == "" {
		return nil, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("--audit-log: %w", err)
	}
	return audit.New(f, nil), func() { _ = f.Close() }, nil
}
