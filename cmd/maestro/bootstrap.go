package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/maestro-ml/maestro/certs/spiffe"
	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/bootstrap"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// runBootstrap prints the bootstrap a node needs to reach the control
// plane: Envoy's, or with --grpc a proxyless gRPC client's.
func runBootstrap(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bootstrap", stderr, "Prints an Envoy bootstrap (node, ADS cluster, admin, stats) for `envoy -c`, or with --grpc\n"+
		"a gRPC xDS bootstrap for GRPC_XDS_BOOTSTRAP (role proxyless). With --tls-cert, --tls-key and\n"+
		"--tls-ca (the files of `maestro certs issue`) the node reaches the control plane over mTLS;\n"+
		"without them the channel is plaintext, for a control plane run with --insecure.\n"+
		"With --token-file (a bootstrap token or a Kubernetes service-account token) the node presents\n"+
		"the token for its first certificate; --tls-ca alone then suffices. Envoy bootstraps carry the\n"+
		"token itself (regenerate them when it rotates); gRPC bootstraps name the file (see docs/certs.md).",
		"--node ID --role gateway|sidecar [--service S] [flags]", "--grpc --node ID [--service S] [flags]")
	node := fs.String("node", "", "node `ID`, unique per proxy or client")
	role := fs.String("role", "", "node `role`: gateway or sidecar (proxyless with --grpc)")
	service := fs.String("service", "", "the `service` a sidecar fronts")
	xdsAddr := fs.String("xds-addr", controlplane.DefaultXDSAddr, "control plane xDS `address` (host:port)")
	adminAddr := fs.String("admin-addr", bootstrap.DefaultAdminAddr, "Envoy admin listen `address`")
	grpcOut := fs.Bool("grpc", false, "print a gRPC xDS bootstrap (JSON) instead of an Envoy one")
	format := fs.String("output", "yaml", "Envoy bootstrap `format`: yaml or json")
	tlsCert := fs.String("tls-cert", "", "node certificate chain `file` (cert.pem of maestro certs issue); with --tls-key and --tls-ca the channel to the control plane is mTLS")
	tlsKey := fs.String("tls-key", "", "node private key `file` (key.pem)")
	tlsCA := fs.String("tls-ca", "", "trust bundle `file` (ca.pem) the control plane's certificate must verify against")
	bundleMap := fs.String("tls-spiffe-bundle-map", "", "with --grpc: write the --tls-ca roots to this `file` as a SPIFFE bundle map and point the bootstrap at it (needs GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE=true in the client; see docs/controlplane.md)")
	tokenFile := fs.String("token-file", "", "`file` holding the token the node presents as authorization: Bearer (inlined into Envoy bootstraps; named in gRPC ones, which need --tls-ca)")
	trustDomain := fs.String("trust-domain", policy.DefaultTrustDomain, "mesh trust `domain`: the control plane must present spiffe://DOMAIN/ns/"+controlplane.SelfNamespace+"/sa/"+controlplane.SelfAccount)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "maestro bootstrap: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	cfg := bootstrap.Config{NodeID: *node, Role: model.Role(*role), Service: *service, XDSAddr: *xdsAddr, AdminAddr: *adminAddr}
	if *tokenFile != "" {
		if *grpcOut {
			cfg.TokenFile = *tokenFile
		} else {
			tok, err := readToken(*tokenFile)
			if err != nil {
				return err
			}
			cfg.Token = tok
		}
	}
	if *tlsCert != "" || *tlsKey != "" || *tlsCA != "" {
		self, err := spiffe.New(*trustDomain, controlplane.SelfNamespace, controlplane.SelfAccount)
		if err != nil {
			return fmt.Errorf("--trust-domain: %w", err)
		}
		// A partial set is an error from the bootstrap package naming the
		// missing file, never a silent fallback to plaintext.
		cfg.TLS = &bootstrap.TLS{CertFile: *tlsCert, KeyFile: *tlsKey, CAFile: *tlsCA, ServerID: self}
		if *bundleMap != "" {
			if err := writeBundleMap(*bundleMap, *tlsCA, self); err != nil {
				return err
			}
			cfg.TLS.SPIFFEBundleMapFile = *bundleMap
		}
	} else if *bundleMap != "" {
		fmt.Fprintln(stderr, "maestro bootstrap: --tls-spiffe-bundle-map needs --tls-cert, --tls-key and --tls-ca")
		return errUsage
	}
	var out []byte
	var err error
	switch {
	case *grpcOut:
		if cfg.Role == "" {
			cfg.Role = model.RoleProxyless
		}
		out, err = bootstrap.GRPC(cfg)
	case *format == "yaml":
		out, err = bootstrap.EnvoyYAML(cfg)
	case *format == "json":
		out, err = bootstrap.EnvoyJSON(cfg)
	default:
		fmt.Fprintf(stderr, "maestro bootstrap: --output %q: want yaml or json\n", *format)
		return errUsage
	}
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

// readToken reads the one token in path for an Envoy bootstrap.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("--token-file %s: empty", path)
	}
	return tok, nil
}

// writeBundleMap derives the SPIFFE bundle map gRPC verifies the control
// plane with from the PEM trust bundle in caFile.
func writeBundleMap(path, caFile string, self spiffe.ID) error {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("--tls-ca: %w", err)
	}
	doc, err := bootstrap.SPIFFEBundleMap(self, ca)
	if err != nil {
		return fmt.Errorf("--tls-ca %s: %w", caFile, err)
	}
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		return fmt.Errorf("--tls-spiffe-bundle-map: %w", err)
	}
	return nil
}
