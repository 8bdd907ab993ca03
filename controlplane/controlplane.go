// Package controlplane wires the control plane together: it loads the
// policy, translates it into snapshots, serves them over xDS, watches the
// input files and serves metrics and status on an admin port. Each step
// lives in its own package (policy, model, snapshot, server, watch); this
// one only runs them in order and keeps the last good result when a step
// fails.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/watch"
)

// Default listen addresses: loopback, so a control plane started by hand
// is not exposed until the operator says so.
const (
	DefaultXDSAddr   = "127.0.0.1:18000"
	DefaultAdminAddr = "127.0.0.1:18001"
)

// SettleAfter is how long clusters a change stopped using stay served
// (make-before-break) before they are removed: far longer than any client
// takes to apply a change, short enough that removed services disappear
// from Envoy's admin page promptly.
const SettleAfter = 10 * time.Second

// Refresh is how often the policy is reloaded without a file change, so
// that certificates are re-issued once past their rotation point: a minute
// is far below any certificate lifetime, and a reload that changes nothing
// pushes nothing.
const Refresh = time.Minute

// shutdownTimeout bounds the admin server's graceful shutdown.
const shutdownTimeout = 5 * time.Second

// Loader reads the inputs at paths and resolves them into a model. files
// are every file it read (policies and endpoints files), which are then
// watched.
type Loader func(ctx context.Context, paths []string) (mesh *model.Mesh, files []string, err error)

// Config configures Run.
type Config struct {
	// Paths are the policy files and directories.
	Paths []string
	// Load resolves Paths; required (see LoadPolicy).
	Load Loader
	// XDSAddr and AdminAddr default to DefaultXDSAddr and DefaultAdminAddr.
	XDSAddr   string
	AdminAddr string
	// GRPCOptions are added to the xDS server's options (e.g. TLS
	// credentials). Plaintext requires Insecure.
	GRPCOptions []grpc.ServerOption
	Insecure    bool
	// InsecureSecrets, with Insecure, serves certificates and their
	// private keys to any client, as plaintext gives no identity to check
	// (loopback development only). Without it a plaintext client gets
	// secrets only with a bootstrap token (CertConfig.BootstrapTokens).
	InsecureSecrets bool
	Logger          *slog.Logger
	// Registry receives the metrics and is served on /metrics; required.
	Registry *prometheus.Registry
	Tracer   trace.TracerProvider
	// Debounce defaults to watch.DefaultDebounce, SettleAfter to
	// SettleAfter and Refresh to Refresh.
	Debounce    time.Duration
	SettleAfter time.Duration
	Refresh     time.Duration
	// Ready, if set, is called once both ports are bound and the first
	// snapshot is served, or the first load waits for certificates
	// (ErrCertsPending: /readyz says so until they come).
	Ready func(Addrs)
	// OnReload, if set, is called after every reload the watcher
	// triggers, with the version served afterwards and the reload's
	// error (nil if applied).
	OnReload func(version string, err error)
	// Certs, if set, supplies the certificates Load uses (Certs.Loader):
	// every change of its rotation manager re-runs the load so renewed
	// certificates are pushed as a new version, and every secret request
	// passes its guard (see InsecureSecrets). The caller runs Certs.Run.
	Certs *Certificates
	// Loop, if set, overlays the rollouts' and adaptive ensembles' weights
	// on every load, is run beside the servers, and its overlay changes
	// rebuild and push (overlay.go). Its feedback endpoints are served on
	// the admin port.
	Loop *closedloop.Loop
	// ObserveAddr is the address (host:port) proxies post adaptive
	// ensembles' observations to, which must reach this admin port; empty
	// is the admin listener's own address, with loopback for an
	// unspecified host (0.0.0.0 reaches nothing). Used with Loop only.
	ObserveAddr string
	// ObservePercent is the share of an adaptive route's requests the
	// fanout filter observes, in (0, 100]; 0 is DefaultObservePercent.
	ObservePercent float64
}

// DefaultObservePercent observes every request of an adaptive ensemble:
// one small local callout per request, and the labels an application
// sends all find their request.
const DefaultObservePercent = 100

// Addrs are the addresses Run bound (useful with port 0).
type Addrs struct {
	XDS   net.Addr
	Admin net.Addr
}

// ErrInsecure is returned when no transport credentials are configured
// and plaintext was not explicitly allowed.
var ErrInsecure = errors.New("no TLS credentials for the xDS port: pass --insecure to serve plaintext")

// Run loads the policy, serves it over xDS and reloads it on every change
// until ctx is done.
//
// # Errors
//
// Run fails before serving if the first load fails (the error lists every
// policy problem), a port cannot be bound, or the configuration is
// incomplete; after that it fails only if a server stops unexpectedly.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	cp, err := newPlane(ctx, cfg)
	if err != nil {
		return err
	}
	if cfg.Certs != nil && !(cfg.Insecure && cfg.InsecureSecrets) {
		guard, err := cfg.Certs.Guard(cfg.Insecure)
		if err != nil {
			return err
		}
		cp.srv.GuardSecrets(guard)
	}
	// The ports are bound before the first load: the observer address
	// it builds into the proxies' configuration may be the admin port's.
	xdsLis, err := net.Listen("tcp", cfg.XDSAddr)
	if err != nil {
		return fmt.Errorf("listen xds: %w", err)
	}
	adminLis, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		_ = xdsLis.Close()
		return fmt.Errorf("listen admin: %w", err)
	}
	closeListeners := func() {
		_ = xdsLis.Close()
		_ = adminLis.Close()
	}
	if err := cp.setObserver(adminLis.Addr()); err != nil {
		closeListeners()
		return err
	}
	files, err := cp.reload(ctx)
	switch {
	case errors.Is(err, ErrCertsPending) && cfg.Certs != nil:
		// The issuer is down: serve the admin port (not ready) and xDS
		// with nothing in it; followCerts loads once certificates come,
		// rather than exiting into a crash loop.
		cfg.Logger.Warn("starting without a configuration until certificates are issued", "error", err)
		// The files the policy reads (endpoints files) are watched from
		// the start, though the load that serves them comes later.
		if pm, perr := policy.Load(ctx, cfg.Paths...); perr == nil {
			files = pm.Files()
		}
	case err != nil:
		closeListeners()
		return fmt.Errorf("initial load: %w", err)
	}
	cfg.Logger.Info("control plane serving", "xds", xdsLis.Addr().String(), "admin", adminLis.Addr().String(),
		"version", cp.srv.Current().Version)
	if cfg.Insecure {
		cfg.Logger.Warn("xDS is served in plaintext (--insecure): any client on the network can read the mesh configuration")
	}
	// The watches are in place before Ready, so no change made after
	// Ready is missed.
	w, err := watch.New(watch.Config{Paths: watched(cfg.Paths, files), Debounce: cfg.Debounce, Logger: cfg.Logger})
	if err != nil {
		closeListeners()
		return err
	}
	opts := cfg.GRPCOptions
	if cfg.Certs != nil && !cfg.Insecure {
		// The port's mTLS, with refused handshakes logged, audited and
		// counted; a later grpc.Creds replaces an earlier one.
		creds := cp.srv.WatchHandshakes(credentials.NewTLS(cfg.Certs.ServerTLS()))
		opts = append(slices.Clone(opts), grpc.Creds(creds))
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cp.srv.Serve(ctx, xdsLis, opts...) })
	g.Go(func() error { return serveAdmin(ctx, cp.log, adminLis, cp.adminHandler(), shutdownTimeout) })
	g.Go(func() error { return cp.watchLoop(ctx, w) })
	if cfg.Certs != nil {
		g.Go(func() error { return cp.followCerts(ctx) })
	}
	if cfg.Loop != nil {
		g.Go(func() error { return cp.followLoop(ctx) })
	}
	if cfg.Ready != nil {
		cfg.Ready(Addrs{XDS: xdsLis.Addr(), Admin: adminLis.Addr()})
	}
	return g.Wait()
}

func (c *Config) defaults() error {
	if c.Load == nil {
		return errors.New("control plane config: no loader")
	}
	if len(c.Paths) == 0 {
		return errors.New("control plane config: no policy path")
	}
	if c.Registry == nil {
		return errors.New("control plane config: no metrics registry")
	}
	if !c.Insecure && len(c.GRPCOptions) == 0 {
		return ErrInsecure
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider()
	}
	if c.XDSAddr == "" {
		c.XDSAddr = DefaultXDSAddr
	}
	if c.AdminAddr == "" {
		c.AdminAddr = DefaultAdminAddr
	}
	if c.Debounce <= 0 {
		c.Debounce = watch.DefaultDebounce
	}
	if c.SettleAfter <= 0 {
		c.SettleAfter = SettleAfter
	}
	if c.Refresh <= 0 {
		c.Refresh = Refresh
	}
	if c.ObservePercent == 0 {
		c.ObservePercent = DefaultObservePercent
	}
	if c.ObservePercent < 0 || c.ObservePercent > 100 {
		return fmt.Errorf("control plane config: observe percent %v is outside (0, 100]", c.ObservePercent)
	}
	return nil
}

// watchLoop reloads on every change w reports. Files a reload starts reading (an endpoints file
// an edit names) are added to the watch before the reload is reported, so
// no later change to them is missed.
func (cp *plane) watchLoop(ctx context.Context, w *watch.Watcher) error {
	settle := time.NewTimer(cp.cfg.SettleAfter)
	settle.Stop()
	refresh := time.NewTicker(cp.cfg.Refresh)
	bg, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		// Settling and refreshing run beside the watcher so they never
		// delay a reload.
		defer refresh.Stop()
		defer settle.Stop()
		for {
			select {
			case <-bg.Done():
				return
			case <-settle.C:
				cp.settle(bg)
			case <-refresh.C:
				// Renews certificates past their rotation point; an
				// unchanged result pushes nothing.
				cp.refresh(bg)
			}
		}
	}()
	return w.Run(ctx, func(ctx context.Context) {
		got, err := cp.reload(ctx)
		if err == nil {
			settle.Reset(cp.cfg.SettleAfter)
			if werr := w.Add(got...); werr != nil {
				cp.log.Warn("cannot watch a file the policy reads; its changes need another edit to be seen", "error", werr)
			}
		}
		if cp.cfg.OnReload != nil {
			cp.cfg.OnReload(cp.srv.Current().Version, err)
		}
	})
}

// watched is the union of the configured paths and the files read.
func watched(paths, files []string) []string {
	out := slices.Clone(paths)
	for _, f := range files {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// serveAdmin serves h on lis until ctx ends, then drains for up to
// timeout. A connection still open after that is closed rather than
// reported: net/http counts a connection that has sent no request yet as
// busy for its first 5 s, and an HTTP/1.1 client pool can open one and
// never use it (a dial that lost the race to an idle connection).
func serveAdmin(ctx context.Context, log *slog.Logger, lis net.Listener, h http.Handler, timeout time.Duration) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("admin connections still open after the drain; closing them", "timeout", timeout, "error", err)
		if err := srv.Close(); err != nil {
			return fmt.Errorf("admin server close: %w", err)
		}
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin server: %w", err)
	}
	return nil
}
