// Package localmesh runs a whole Maestro mesh in one process, for `maestro
// up`: an inference server for every local endpoint of the policy's
// services, the control plane serving them over xDS, Envoy and gRPC
// bootstrap files, a table of what runs where, a live count of requests per
// service version, and optional demo traffic through proxyless gRPC clients
// that follow the policy's splits.
package localmesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/examples"
	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime/builtin"
	"github.com/maestro-ml/maestro/inference/server"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// Defaults of Config.
const (
	DefaultDir      = "maestro-up"
	DefaultInterval = time.Second
	DefaultRate     = 200 // demo requests per second per route
)

// Config configures Run.
type Config struct {
	// Dir is the working directory: bootstrap files are written there and,
	// when Policy is empty, the embedded demo mesh and models too.
	Dir string
	// Policy is the policy file to run; empty runs Dir/mesh.yaml and
	// Dir/mesh-rest.yaml, extracted from the embedded demo unless the
	// files already exist.
	Policy string
	// Models is the model repository; empty uses Dir/models.
	Models string
	// XDSAddr and AdminAddr are the control plane's addresses.
	XDSAddr, AdminAddr string
	// DemoTraffic sends Rate requests a second to every proxyless route.
	DemoTraffic bool
	Rate        float64
	// Interval is how often the live line is refreshed.
	Interval time.Duration
	Out      io.Writer
	Logger   *slog.Logger
	// OnCounts, if set, receives every refresh of the request counts
	// (service -> version -> requests served).
	OnCounts func(Counts)
	// OnReload, if set, is called after each policy reload the control
	// plane applies or rejects.
	OnReload func(version string, err error)
	// OnReady, if set, is called once everything serves.
	OnReady func(Started)
	// Tracing, if set, traces the inference servers and the control
	// plane; nil leaves them untraced. The caller shuts it down.
	Tracing *telemetry.Tracing
	// WasmDir is where the policy's relative wasm file names resolve for
	// the built-in gateways ("" is the working directory, as for Envoy).
	WasmDir string
	// GatewayPorts, if set, maps a Gateway's name to the loopback port its
	// built-in gateway listens on instead of the policy's (0: a free port).
	GatewayPorts map[string]int
	// OnRoutes, if set, receives every refresh of the per-route stats:
	// the gateways' and the control plane's rollouts and adaptive weights.
	OnRoutes func(RouteStats)
	// Envoy selects the data plane of the policy's Gateways: "" runs the
	// built-in gateway, "auto" an envoy binary on PATH if there is one
	// (else the built-in gateway), anything else is the envoy binary to
	// run, with the bootstraps written to Dir.
	Envoy string
	// EnvoyAdminPort is the first admin port of the written Envoy
	// bootstraps (one per gateway and sidecar, counting up); 9901 if 0.
	EnvoyAdminPort int
}

// Started says where the running mesh listens.
type Started struct {
	XDS, Admin string
	Servers    []StartedServer
	Gateways   []StartedGateway
	// RestartControlPlane stops the control plane and starts it again on
	// the same addresses, as an upgrade or a crash and restart would, and
	// returns once it serves again: nodes keep their last configuration
	// meanwhile and reconnect.
	RestartControlPlane func(ctx context.Context) error
}

// StartedGateway is one running built-in gateway.
type StartedGateway struct {
	Name            string // the policy's Gateway
	Listener, Admin string // host:port
}

// StartedServer is one running inference server.
type StartedServer struct {
	Name, Service, Version string
	GRPC, HTTP             string
	// Stop stops this server alone, as a crashed replica would stop; the
	// rest of the mesh keeps running.
	Stop func()
}

// Counts are requests served, by service and version.
type Counts map[string]map[string]uint64

func (c *Config) defaults() error {
	if c.Dir == "" {
		c.Dir = DefaultDir
	}
	if c.XDSAddr == "" {
		c.XDSAddr = controlplane.DefaultXDSAddr
	}
	if c.AdminAddr == "" {
		c.AdminAddr = controlplane.DefaultAdminAddr
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.EnvoyAdminPort == 0 {
		c.EnvoyAdminPort = 9901
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// running is one started inference server.
type running struct {
	backend
	grpcAddr, httpAddr string
	metrics            *prometheus.Registry
	stop               context.CancelFunc
}

// Run starts the mesh and blocks until ctx is done, then stops everything
// and returns nil; it returns an error if anything fails to start (a busy
// port names the port and what wanted it) or stops unexpectedly.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	if cfg.Policy == "" || cfg.Models == "" {
		if err := extract(examples.Demo(), cfg.Dir); err != nil {
			return fmt.Errorf("extract the demo mesh into %s: %w", cfg.Dir, err)
		}
	}
	paths := []string{cfg.Policy}
	if cfg.Policy == "" {
		// The demo's gRPC side and its REST side.
		paths = []string{filepath.Join(cfg.Dir, "mesh.yaml"), filepath.Join(cfg.Dir, "mesh-rest.yaml")}
	}
	if cfg.Models == "" {
		cfg.Models = filepath.Join(cfg.Dir, "models")
	}
	mesh, err := policy.Load(ctx, paths...)
	if err != nil {
		return err
	}
	backends, err := plan(mesh)
	if err != nil {
		return fmt.Errorf("%s: %w", strings.Join(paths, ", "), err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	// fail stops whatever already started before returning err.
	fail := func(err error) error {
		cancel()
		return errors.Join(err, g.Wait())
	}
	servers, err := startServers(gctx, g, cfg, backends)
	if err != nil {
		return fail(err)
	}
	loop, err := closedLoop(cfg, servers)
	if err != nil {
		return fail(err)
	}
	ready := make(chan controlplane.Addrs, 1)
	cp := &plane{cfg: cfg, paths: paths, loop: loop, ready: ready, restart: make(chan chan<- error)}
	g.Go(func() error { return cp.run(gctx) })
	var addrs controlplane.Addrs
	select {
	case addrs = <-ready:
	case <-gctx.Done():
		// A server or the control plane failed to start (or the caller
		// gave up): the group holds the reason.
		return g.Wait()
	}
	boot, err := writeBootstraps(cfg.Dir, mesh, addrs.XDS.String(), cfg.EnvoyAdminPort)
	if err != nil {
		return fail(err)
	}
	envoy, err := findEnvoy(cfg.Envoy)
	if err != nil {
		return fail(err)
	}
	var gateways []*startedGateway
	switch {
	case envoy != "":
		fmt.Fprintf(cfg.Out, "gateways run by %s\n", envoy)
	case cfg.Envoy == EnvoyAuto:
		fmt.Fprintln(cfg.Out, "no envoy on PATH: the built-in gateway runs the gateways")
	}
	if envoy != "" {
		gateways, err = startEnvoys(gctx, g, cfg, envoy, boot.gateways)
		if err != nil {
			return fail(err)
		}
	} else if missing := missingFilters(mesh, cfg.WasmDir); len(mesh.Gateways) > 0 && len(missing) > 0 {
		fmt.Fprintf(cfg.Out, "gateways not started: the filters' code %v is missing (run `make wasm` in the repository, or pass --wasm-dir)\n\n", missing)
	} else {
		gateways, err = startGateways(gctx, g, cfg, mesh, addrs.XDS.String())
		if err != nil {
			return fail(err)
		}
	}
	printTable(cfg.Out, mesh, servers, gateways, addrs, boot)
	if cfg.OnReady != nil {
		st := Started{XDS: addrs.XDS.String(), Admin: addrs.Admin.String()}
		for _, s := range servers {
			st.Servers = append(st.Servers, StartedServer{Name: s.Name(), Service: s.Service, Version: s.Version, GRPC: s.grpcAddr, HTTP: s.httpAddr, Stop: s.stop})
		}
		for _, gw := range gateways {
			st.Gateways = append(st.Gateways, StartedGateway{Name: gw.name, Listener: gw.listener, Admin: gw.admin})
		}
		st.RestartControlPlane = cp.restartAndWait
		cfg.OnReady(st)
	}
	seen := newAnswers()
	if err := scrapeGateways(loop, servers, gateways); err != nil {
		return fail(err)
	}
	g.Go(func() error { return live(gctx, cfg, servers, gateways, seen, addrs.Admin.String()) })
	if cfg.DemoTraffic {
		g.Go(func() error { return demoTraffic(gctx, cfg, mesh, boot.grpc) })
		g.Go(func() error { return gatewayTraffic(gctx, cfg, mesh, gateways, seen) })
	}
	return g.Wait()
}

func startServers(ctx context.Context, g *errgroup.Group, cfg Config, backends []backend) ([]*running, error) {
	var out []*running
	for _, b := range backends {
		dir := filepath.Join(cfg.Dir, "servers", b.Name())
		if err := b.repository(cfg.Models, dir); err != nil {
			return nil, err
		}
		reg := telemetry.NewRegistry()
		srv, err := server.New(server.Config{
			Name:    b.Name(),
			Models:  repository.Options{Dir: dir, Registry: builtin.Registry(), Logger: cfg.Logger},
			Metrics: reg,
			Logger:  cfg.Logger.With("server", b.Name()),
			Tracing: cfg.Tracing,
		})
		if err != nil {
			return nil, fmt.Errorf("inference server %s: %w", b.Name(), err)
		}
		grpcLis, err := listen(b.Addr)
		if err != nil {
			return nil, busyPort(err, b.Addr, fmt.Sprintf("service %s version %s", b.Service, b.Version))
		}
		httpLis, err := listen(b.HTTPAddr)
		if err != nil {
			grpcLis.Close()
			return nil, busyPort(fmt.Errorf("inference server %s: http port: %w", b.Name(), err), b.HTTPAddr, fmt.Sprintf("the REST port of service %s version %s", b.Service, b.Version))
		}
		sctx, stop := context.WithCancel(ctx)
		r := &running{backend: b, grpcAddr: grpcLis.Addr().String(), httpAddr: httpLis.Addr().String(), metrics: reg, stop: stop}
		g.Go(func() error {
			defer stop()
			if err := srv.Serve(sctx, grpcLis, httpLis); err != nil {
				return fmt.Errorf("inference server %s: %w", r.Name(), err)
			}
			return nil
		})
		out = append(out, r)
	}
	return out, nil
}

// tracerProvider is t's provider, or nil (the control plane's no-op
// default) when tracing is off.
func tracerProvider(t *telemetry.Tracing) trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.Provider
}

// busyPort rewords "address already in use" so the user learns which port
// and what wanted it.
func busyPort(err error, addr, who string) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("port %s, wanted by %s, is already in use: stop what holds it or change the address: %w", addr, who, err)
	}
	return err
}

// listen listens on addr, or on a free loopback port when addr is empty.
func listen(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	return net.Listen("tcp", addr)
}
