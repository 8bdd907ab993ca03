package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/maestro-ml/maestro/controlplane/istio"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// runIstio renders a policy as Istio resources for clusters that already
// run Istio.
func runIstio(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if _, err := chooseSubcommand("istio", args, []subcommand{
		{"render", "write the policy as Istio resources (multi-document YAML)"},
	}, stderr); err != nil {
		return err
	}
	fs := newFlagSet("istio render", stderr, `Writes PeerAuthentication, DestinationRules, VirtualServices, AuthorizationPolicies
and WasmPlugins (or an EnvoyFilter for the fanout filter) for the policy, for a cluster that already runs Istio (docs/istio.md).`, "-f POLICY [-o DIR|-] [flags]")
	var files stringsFlag
	fs.Var(&files, "f", "policy file or directory (repeatable)")
	out := fs.String("o", "-", "output directory (the file is named after the first policy file), a .yaml file, or - for standard output")
	var opts istio.Options
	fs.StringVar(&opts.ClusterDomain, "cluster-domain", istio.DefaultClusterDomain, "Kubernetes cluster domain of service hosts")
	fs.StringVar(&opts.RootNamespace, "root-namespace", istio.DefaultRootNamespace, "Istio root namespace (mesh-wide PeerAuthentication and WasmPlugins)")
	grpcPort := fs.Uint("grpc-port", istio.DefaultGRPCPort, "Service port of grpc services")
	httpPort := fs.Uint("http-port", istio.DefaultHTTPPort, "Service port of http services")
	fs.StringVar(&opts.AppLabel, "app-label", istio.DefaultAppLabel, "pod label whose value is the service name (AuthorizationPolicy selectors)")
	fs.StringVar(&opts.WasmDir, "wasm-dir", policy.DefaultWasmDir, "directory the proxies find relative local filter modules in")
	fs.BoolVar(&opts.FanoutStopIteration, "fanout-stop-iteration", false,
		"render the fanout filter as an EnvoyFilter that sets allow_on_headers_stop_iteration (REST ensembles and shadows need it; proxies on Envoy 1.35+)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "maestro istio render: -f POLICY is required")
		return errUsage
	}
	for name, p := range map[string]uint{"--grpc-port": *grpcPort, "--http-port": *httpPort} {
		if p == 0 || p > 65535 {
			return fmt.Errorf("%s %d: want a port 1..65535", name, p)
		}
	}
	opts.GRPCPort, opts.HTTPPort = uint32(*grpcPort), uint32(*httpPort)
	mesh, err := policy.Load(ctx, files...)
	if err != nil {
		return err
	}
	rs, err := istio.Render(mesh, opts)
	if err != nil {
		return fmt.Errorf("render istio resources: %w", err)
	}
	data, err := istio.MarshalYAML(rs)
	if err != nil {
		return fmt.Errorf("render istio resources: %w", err)
	}
	if *out == "-" {
		_, err = stdout.Write(data)
		return err
	}
	path := *out
	if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return fmt.Errorf("create output directory: %w", err)
		}
		path = filepath.Join(path, outputName(files[0]))
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	fmt.Fprintf(stderr, "wrote %d resources to %s\n", len(rs), path)
	return nil
}

// outputName names the rendered file after the policy file it came from,
// so examples/mesh.yaml renders to <dir>/mesh.yaml.
func outputName(policyPath string) string {
	if st, err := os.Stat(policyPath); err == nil && !st.IsDir() {
		base := filepath.Base(policyPath)
		if ext := filepath.Ext(base); ext == ".yaml" || ext == ".yml" {
			return base
		}
		return strings.TrimSuffix(base, filepath.Ext(base)) + ".yaml"
	}
	return "istio.yaml"
}
