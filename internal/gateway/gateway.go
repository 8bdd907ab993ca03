// Package gateway is Maestro's development data plane: a gateway node that
// takes the same LDS, RDS, CDS, EDS and ECDS as Envoy from the control
// plane over ADS, serves each listener with HTTP/1.1 and h2c on one port,
// runs the HTTP filter chain (the wasm filters from ECDS, then the router)
// and serves Envoy-named stats on its admin port. It implements exactly the
// fields the translator emits for gateways and NACKs any other by name
// (package xdsconfig); production stays Envoy or Istio (docs/gateway.md).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/internal/gateway/router"
	"github.com/maestro-ml/maestro/internal/gateway/stats"
	"github.com/maestro-ml/maestro/internal/gateway/upstream"
	"github.com/maestro-ml/maestro/internal/gateway/xdsclient"
	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

// DefaultAdminAddr is the admin listener, Envoy's default admin address.
const DefaultAdminAddr = "127.0.0.1:9901"

// ADS keepalive, as the Envoy bootstrap sets it: a silently dropped control
// plane is noticed within seconds and the client reconnects.
const (
	keepaliveInterval = 30 * time.Second
	keepaliveTimeout  = 5 * time.Second
	// drainTimeout bounds a removed listener's graceful shutdown.
	drainTimeout = 5 * time.Second
)

// FilterLoader builds an ECDS filter; the gateway closes it when the
// filter's config changes or goes away.
type FilterLoader func(ctx context.Context, f *xdsconfig.WasmFilter, clusters *upstream.Manager) (Filter, error)

// Filter is a loaded ECDS filter.
type Filter interface {
	router.FilterFactory
	Close() error
}

// Config configures a gateway.
type Config struct {
	// NodeID is the node's unique ID; required.
	NodeID string
	// Service, if set, is announced as the node's maestro.service
	// metadata, which a Gateway's spec.nodes.service selects.
	Service string
	// XDSAddr is the control plane's host:port; required.
	XDSAddr string
	// DialOptions replace the default plaintext credentials to the control
	// plane (e.g. mTLS).
	DialOptions []grpc.DialOption
	// AdminAddr is the admin listener (stats, ready, config dump);
	// DefaultAdminAddr when empty.
	AdminAddr string
	// BindHost, if set, replaces every listener's host (tests bind
	// 127.0.0.1 where the policy says 0.0.0.0).
	BindHost string
	// BindPort, if set, maps a listener name to the port to bind instead
	// of the configured one (0 picks a free port; see ListenerAddr).
	BindPort map[string]int
	// LoadFilter builds the wasm filters of ECDS; nil uses the built-in
	// proxy-wasm host (WasmLoader).
	LoadFilter FilterLoader
	// WasmDir is where relative wasm file names are resolved (Envoy
	// resolves them against its working directory); "" keeps them
	// relative to this process's.
	WasmDir string
	// BufferLimit is the per-stream body buffer limit,
	// router.DefaultBufferLimit when 0.
	BufferLimit int
	// WriteTimeout closes a downstream connection, HTTP/1.1 or h2c, whose
	// client has not accepted a write of its answer for this long;
	// h2.DefaultWriteTimeout (30 s) when 0. Each write has its own
	// deadline, so a long answer read slowly is not cut.
	WriteTimeout time.Duration
	// StreamIdleTimeout answers 408 to a request (HTTP/1.1 or h2c) whose body
	// stops arriving for this long; DefaultStreamIdleTimeout (5 min,
	// Envoy's stream_idle_timeout) when 0.
	StreamIdleTimeout time.Duration
	// Logger; slog.Default() when nil.
	Logger *slog.Logger
	// Ready, if set, is called with the admin address once it listens.
	Ready func(admin net.Addr)
	// OnXDS, if set, sees every ACK and NACK.
	OnXDS func(xdsclient.Event)
}

// Gateway is one running gateway node.
type Gateway struct {
	cfg      Config
	log      *slog.Logger
	stats    *stats.Store
	clusters *upstream.Manager
	client   *xdsclient.Client
	wasm     *wasmState
	tracers  *tracers

	mu        sync.Mutex
	listeners map[string]*listener
	filters   map[string]loadedFilter
	state     xdsclient.State
	live      bool // readiness reached LIVE once
}

type loadedFilter struct {
	cfg    *xdsconfig.WasmFilter
	filter Filter
}

// Run starts a gateway and serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	g, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	return g.Run(ctx)
}

// New checks cfg and prepares a gateway; Run starts it. Background work
// stops when ctx ends.
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	var errs []error
	if cfg.NodeID == "" {
		errs = append(errs, errors.New("node id is required"))
	}
	if _, _, err := net.SplitHostPort(cfg.XDSAddr); err != nil {
		errs = append(errs, fmt.Errorf("xds address %q: %w", cfg.XDSAddr, err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = DefaultAdminAddr
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	st := stats.New()
	g := &Gateway{
		cfg: cfg, log: log, stats: st, clusters: upstream.NewManager(ctx, st, log),
		listeners: map[string]*listener{}, filters: map[string]loadedFilter{},
	}
	g.wasm = newWasmState(log, cfg.WasmDir)
	g.tracers = newTracers(g.clusters)
	if cfg.LoadFilter == nil {
		g.cfg.LoadFilter = g.wasm.load
	}
	return g, nil
}

// node is the gateway's xDS node: role gateway in the metadata the control
// plane groups nodes by, as `maestro bootstrap --role gateway` writes it.
func (g *Gateway) node() (*corev3.Node, error) {
	fields := map[string]any{model.MetadataRole: string(model.RoleGateway)}
	if g.cfg.Service != "" {
		fields[model.MetadataService] = g.cfg.Service
	}
	md, err := structpb.NewStruct(fields)
	if err != nil {
		return nil, err
	}
	return &corev3.Node{Id: g.cfg.NodeID, Cluster: string(model.RoleGateway), Metadata: md, UserAgentName: "maestro-gateway"}, nil
}

// Run serves the admin port and the listeners the control plane sends
// until ctx ends.
func (g *Gateway) Run(ctx context.Context) error {
	node, err := g.node()
	if err != nil {
		return err
	}
	opts := g.cfg.DialOptions
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveInterval, Timeout: keepaliveTimeout}))
	conn, err := grpc.NewClient(g.cfg.XDSAddr, opts...)
	if err != nil {
		return fmt.Errorf("dial control plane %s: %w", g.cfg.XDSAddr, err)
	}
	defer conn.Close()
	connected := g.stats.Gauge("envoy_control_plane_connected_state")
	g.client, err = xdsclient.New(xdsclient.Config{
		Conn: conn, Node: node, Apply: g.apply, Logger: g.log,
		OnEvent: g.onEvent,
		OnConnect: func(up bool) {
			v := int64(0)
			if up {
				v = 1
			}
			connected.Set(v)
		},
	})
	if err != nil {
		return err
	}
	admin, err := net.Listen("tcp", g.cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	adminSrv := &http.Server{Handler: g.adminMux(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = adminSrv.Serve(admin) }()
	if g.cfg.Ready != nil {
		g.cfg.Ready(admin.Addr())
	}
	err = g.client.Run(ctx)
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer cancel()
	_ = adminSrv.Shutdown(shut)
	g.mu.Lock()
	for _, l := range g.listeners {
		l.stop(shut)
	}
	for _, f := range g.filters {
		_ = f.filter.Close()
	}
	g.mu.Unlock()
	g.wasm.close(shut)
	g.tracers.shutdown(shut)
	return err
}

func (g *Gateway) onEvent(ev xdsclient.Event) {
	kind := typeStat(ev.TypeURL)
	name := "envoy_" + kind + "_update_success"
	if ev.Err != nil {
		name = "envoy_" + kind + "_update_rejected"
	}
	g.stats.Counter(name).Inc()
	if g.cfg.OnXDS != nil {
		g.cfg.OnXDS(ev)
	}
}

// typeStat is the stat prefix Envoy counts a type's updates under.
func typeStat(typeURL string) string {
	switch typeURL {
	case resource.ClusterType:
		return "cluster_manager_cds"
	case resource.EndpointType:
		return "cluster_eds"
	case resource.SecretType:
		return "sds"
	case resource.ListenerType:
		return "listener_manager_lds"
	case resource.RouteType:
		return "http_rds"
	default:
		return "extension_config_discovery"
	}
}

// ListenerAddr returns the address a listener is bound to, if running.
func (g *Gateway) ListenerAddr(name string) (net.Addr, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	l, ok := g.listeners[name]
	if !ok {
		return nil, false
	}
	return l.ln.Addr(), true
}

// Stats is the gateway's stat store.
func (g *Gateway) Stats() *stats.Store { return g.stats }
