package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/maestro-ml/maestro/internal/gateway"
)

// runGateway runs the built-in gateway data plane: a node with role gateway
// that takes its listeners, routes, clusters and wasm filters from the
// control plane, until ctx ends.
func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gateway", stderr, `Runs a gateway node: it subscribes over ADS to what the control plane sends an
Envoy gateway (LDS, RDS, CDS, EDS, ECDS), serves the listeners with HTTP/1.1 and
h2c, runs the wasm filters, and serves /stats/prometheus, /ready and /config_dump
on the admin port. A development data plane: production runs Envoy or Istio
(docs/gateway.md).`, "--node ID [flags]")
	node := fs.String("node", "", "node `ID`, unique per gateway")
	service := fs.String("service", "", "announce this `service` in the node metadata (a Gateway's spec.nodes.service selects it)")
	xds := fs.String("xds-addr", "127.0.0.1:18000", "control plane `address` (plaintext: a control plane run with --insecure)")
	admin := fs.String("admin-addr", gateway.DefaultAdminAddr, "admin listen `address`")
	bindHost := fs.String("bind-host", "", "listen on this `host` instead of each listener's configured address")
	wasmDir := fs.String("wasm-dir", "", "`dir` relative wasm file names are resolved against (default: the working directory)")
	writeTimeout := fs.Duration("write-timeout", 0, "close a downstream connection whose peer has not taken a write for this long (default 30s)")
	streamIdle := fs.Duration("stream-idle-timeout", 0, "answer 408 to a request (HTTP/1.1 or h2c) whose body stops arriving for this long (default 5m, Envoy's stream_idle_timeout)")
	logs := addLogFlags(fs, "info")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "maestro gateway: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	if *writeTimeout < 0 || *streamIdle < 0 {
		fmt.Fprintln(stderr, "maestro gateway: --write-timeout and --stream-idle-timeout must not be negative")
		return errUsage
	}
	if *node == "" {
		fmt.Fprintln(stderr, "maestro gateway: --node is required")
		return errUsage
	}
	log, _, flush, err := logs.observe(ctx, stderr, "maestro-gateway")
	if err != nil {
		return err
	}
	defer flush()
	return gateway.Run(ctx, gateway.Config{
		NodeID: *node, Service: *service, XDSAddr: *xds, AdminAddr: *admin, BindHost: *bindHost, WasmDir: *wasmDir, Logger: log,
		WriteTimeout: *writeTimeout, StreamIdleTimeout: *streamIdle,
		Ready: func(a net.Addr) { fmt.Fprintf(stdout, "gateway %s: admin on http://%s\n", *node, a) },
	})
}
