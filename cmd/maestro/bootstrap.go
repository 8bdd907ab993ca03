package main

import (
	"context"
	"fmt"
	"io"

	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/bootstrap"
	"github.com/maestro-ml/maestro/controlplane/model"
)

// runBootstrap prints the bootstrap a node needs to reach the control
// plane: Envoy's, or with --grpc a proxyless gRPC client's.
func runBootstrap(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bootstrap", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: maestro bootstrap --node ID --role gateway|sidecar [--service S] [flags]")
		fmt.Fprintln(stderr, "       maestro bootstrap --grpc --node ID [--service S] [flags]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Prints an Envoy bootstrap (node, ADS cluster, admin, stats) for `envoy -c`, or with --grpc")
		fmt.Fprintln(stderr, "a gRPC xDS bootstrap for GRPC_XDS_BOOTSTRAP (role proxyless).")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	node := fs.String("node", "", "node `ID`, unique per proxy or client")
	role := fs.String("role", "", "node `role`: gateway or sidecar (proxyless with --grpc)")
	service := fs.String("service", "", "the `service` a sidecar fronts")
	xdsAddr := fs.String("xds-addr", controlplane.DefaultXDSAddr, "control plane xDS `address` (host:port)")
	adminAddr := fs.String("admin-addr", bootstrap.DefaultAdminAddr, "Envoy admin listen `address`")
	grpcOut := fs.Bool("grpc", false, "print a gRPC xDS bootstrap (JSON) instead of an Envoy one")
	format := fs.String("output", "yaml", "Envoy bootstrap `format`: yaml or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "maestro bootstrap: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	cfg := bootstrap.Config{NodeID: *node, Role: model.Role(*role), Service: *service, XDSAddr: *xdsAddr, AdminAddr: *adminAddr}
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
