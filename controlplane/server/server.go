// Package server serves the control plane's snapshots over xDS v3: ADS in
// both state-of-the-world and delta variants plus every per-type discovery
// service, with callbacks that count pushes, ACKs and NACKs per node and
// type and keep a NACKed version reported until the node ACKs a newer one.
//
// The server knows nothing of policy files: it is handed a Set (one
// consistent snapshot per node group and the function that puts a node in
// a group) and serves it. Nodes are keyed in the snapshot cache by their
// group, so all nodes of a group share one snapshot and one push.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	extensionservice "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	xdsserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/controlplane/model"
)

// Keepalive settings of the xDS gRPC server. An xDS stream is idle for
// long stretches (between policy changes), so dead peers must be found by
// pings rather than by failed writes.
const (
	// KeepaliveTime is how long a connection may be idle before the server
	// pings it: short enough to free the watches of an Envoy that vanished
	// behind a NAT or a killed pod within a minute.
	KeepaliveTime = 30 * time.Second
	// KeepaliveTimeout is how long the server waits for the ping's answer
	// before closing the connection.
	KeepaliveTimeout = 5 * time.Second
	// KeepaliveMinTime is the shortest client ping interval tolerated. The
	// bootstraps Maestro writes ping every 30 s; a lower bound well below
	// that keeps well-behaved clients from being disconnected with
	// ENHANCE_YOUR_CALM while still refusing ping floods.
	KeepaliveMinTime = 10 * time.Second
	// MaxConcurrentStreams is large because one Envoy without ADS opens a
	// stream per resource type, and a gateway may multiplex many nodes.
	MaxConcurrentStreams = 1 << 20
)

// Resolver puts a connecting node in a node group; ok is false when no
// group matches (the node then waits, receiving nothing, until one does).
type Resolver func(model.NodeInfo) (group string, ok bool)

// Set is everything the server serves at one moment: a consistent snapshot
// per node group and how nodes map to groups. Version identifies the whole
// set in logs and metrics.
type Set struct {
	Version   string
	Snapshots map[string]*cache.Snapshot
	Resolve   Resolver
	// ids binds groups to identities; Update derives it from Snapshots.
	ids *identities
}

// Config configures a Server. Only Logger is required.
type Config struct {
	Logger *slog.Logger
	// Registry receives the maestro_controlplane_* metrics; nil skips them.
	Registry prometheus.Registerer
	// Tracer creates the push spans; nil means no tracing.
	Tracer trace.TracerProvider
	// Audit records refused nodes and TLS handshakes; nil discards.
	Audit *audit.Log
}

// Server serves snapshots over xDS. Create it with New, register it on a
// gRPC server with Register, and hand it snapshots with Update.
type Server struct {
	log     *slog.Logger
	cache   cache.SnapshotCache
	xds     xdsserver.Server
	tracker *tracker
	metrics *metrics
	tracer  trace.Tracer
	audit   *audit.Log
	current atomic.Pointer[Set]
}

// New returns a Server with no snapshots. ctx bounds the life of the
// go-control-plane server's internal goroutines.
//
// # Errors
//
// New fails when the metrics cannot be registered (e.g. registered twice
// on the same registry).
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		return nil, errors.New("server config: logger is required")
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("server metrics: %w", err)
	}
	tp := cfg.Tracer
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	s := &Server{
		log:     cfg.Logger,
		metrics: m,
		tracer:  tp.Tracer("github.com/maestro-ml/maestro/controlplane/server"),
	}
	s.current.Store(&Set{})
	// ads=false: in ADS mode the cache answers a request for named
	// resources only when it names every resource of that type in the
	// snapshot, but a proxyless gRPC client asks only for the listeners it
	// dials, so a group with several targets would never be answered.
	// Ordering is kept by make-before-break in the snapshots instead.
	s.cache = cache.NewSnapshotCache(false, nodeHash{s}, cacheLogger{cfg.Logger})
	s.tracker = newTracker(cfg.Logger, m, s.groupOf)
	s.tracker.snapshotAt = s.snapshotAt
	s.tracker.identities = func() *identities { return s.current.Load().ids }
	s.tracker.audit = cfg.Audit
	s.audit = cfg.Audit
	s.xds = xdsserver.NewServer(ctx, s.cache, s.tracker)
	return s, nil
}

// GRPCOptions returns the server options the xDS gRPC server needs
// (keepalive, stream limits); callers add their own (TLS, interceptors).
func GRPCOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}),
	}
}

// Register registers ADS (SotW and delta) and the per-type discovery
// services (LDS, RDS, CDS, EDS, SDS, ECDS) on g.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, s.xds)
	routeservice.RegisterRouteDiscoveryServiceServer(g, s.xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, s.xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, s.xds)
	secretservice.RegisterSecretDiscoveryServiceServer(g, s.xds)
	extensionservice.RegisterExtensionConfigDiscoveryServiceServer(g, s.xds)
}

// Serve serves xDS on lis until ctx is done, then stops gracefully (open
// streams are closed; Envoy reconnects to another replica). opts are added
// to GRPCOptions.
func (s *Server) Serve(ctx context.Context, lis net.Listener, opts ...grpc.ServerOption) error {
	g := grpc.NewServer(append(GRPCOptions(), opts...)...)
	s.Register(g)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			// Streams never end on their own, so GracefulStop would wait
			// for ever; Stop closes them and clients reconnect.
			g.Stop()
		case <-done:
		}
	}()
	if err := g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve xds on %s: %w", lis.Addr(), err)
	}
	return nil
}

// Update makes set the one being served. Every snapshot must be
// consistent; the set is checked whole before anything is served, so
// clients never see half of it. Groups absent from set keep their last
// snapshot, so a node whose group vanished keeps its configuration rather
// than losing every listener; the mismatch is logged.
//
// # Errors
//
// Update fails, serving nothing new, when a snapshot is nil or not
// Consistent().
func (s *Server) Update(ctx context.Context, set Set) (err error) {
	ctx, span := s.tracer.Start(ctx, "controlplane.push", trace.WithAttributes(
		attribute.String("maestro.version", set.Version),
		attribute.Int("maestro.groups", len(set.Snapshots)),
	))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	if set.Resolve == nil {
		return errors.New("update: set has no resolver")
	}
	groups := slices.Sorted(maps.Keys(set.Snapshots))
	for _, g := range groups {
		snap := set.Snapshots[g]
		if snap == nil {
			return fmt.Errorf("update: group %q: nil snapshot", g)
		}
		if err := snap.Consistent(); err != nil {
			return fmt.Errorf("update: group %q: snapshot not consistent: %w", g, err)
		}
	}
	set.ids = newIdentities(set.Snapshots)
	prev := s.current.Swap(&set)
	pushed := 0
	for _, g := range groups {
		snap := set.Snapshots[g]
		if old, ok := prev.Snapshots[g]; ok && sameVersions(old, snap) {
			continue // unchanged content: no push
		}
		if err := s.cache.SetSnapshot(ctx, g, snap); err != nil {
			return fmt.Errorf("update: group %q: %w", g, err)
		}
		pushed++
		s.metrics.snapshots.WithLabelValues(g).Inc()
	}
	pushed += s.adoptUnmatched(ctx, set)
	for g := range prev.Snapshots {
		if _, ok := set.Snapshots[g]; !ok {
			s.log.Warn("node group removed; its nodes keep their last snapshot until they reconnect", "group", g)
		}
	}
	span.SetAttributes(attribute.Int("maestro.groups_pushed", pushed))
	s.metrics.version.Reset()
	s.metrics.version.WithLabelValues(set.Version).Set(1)
	s.log.Info("snapshots updated", "version", set.Version, "groups", len(groups), "pushed", pushed)
	return nil
}

// adoptUnmatched answers the open watches of nodes that matched no group
// when they connected but match one in set: their watches are keyed by
// their own unmatched key, so the group's snapshot is set there once (which
// answers them) and the key dropped; their next requests resolve to the
// group. It returns the number of nodes adopted.
func (s *Server) adoptUnmatched(ctx context.Context, set Set) int {
	n := 0
	for _, key := range s.cache.GetStatusKeys() {
		if !strings.HasPrefix(key, unmatchedPrefix) {
			continue
		}
		node := NodeInfo(s.cache.GetStatusInfo(key).GetNode())
		g, ok := set.Resolve(node)
		if !ok || set.Snapshots[g] == nil {
			continue
		}
		if err := s.cache.SetSnapshot(ctx, key, set.Snapshots[g]); err != nil {
			s.log.Error("answer a node that now matches a group", "node", node.ID, "group", g, "error", err)
			continue
		}
		s.cache.ClearSnapshot(key)
		s.log.Info("node now matches a group", "node", node.ID, "group", g)
		n++
	}
	return n
}

// Current returns the set being served.
func (s *Server) Current() Set { return *s.current.Load() }

// Nodes returns the status of every node seen since start, sorted by ID.
func (s *Server) Nodes() []NodeStatus { return s.tracker.status() }

// groupOf resolves a node with the current set's resolver.
func (s *Server) groupOf(n model.NodeInfo) (string, bool) {
	set := s.current.Load()
	if set.Resolve == nil {
		return "", false
	}
	return set.Resolve(n)
}

// snapshotAt returns group's current snapshot if its typeURL resources
// are at version, else nil.
func (s *Server) snapshotAt(group, typeURL, version string) *cache.Snapshot {
	snap := s.current.Load().Snapshots[group]
	if snap == nil || snap.GetVersion(typeURL) != version {
		return nil
	}
	return snap
}

// sameVersions reports whether two snapshots carry the same version for
// every resource type, i.e. the same content (versions are content hashes).
func sameVersions(a, b *cache.Snapshot) bool {
	for i := range a.Resources {
		if a.Resources[i].Version != b.Resources[i].Version {
			return false
		}
	}
	return true
}
