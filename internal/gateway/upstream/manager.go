package upstream

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maestro-ml/maestro/internal/gateway/stats"
	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

// dnsRefresh is Envoy's default dns_refresh_rate for STRICT_DNS clusters.
const dnsRefresh = 5 * time.Second

// Manager owns every cluster of the node.
type Manager struct {
	ctx   context.Context
	stats *stats.Store
	log   *slog.Logger

	mu       sync.Mutex // serialises Update
	clusters atomic.Pointer[map[string]*Cluster]
}

// NewManager returns an empty manager; background work (health checks,
// DNS) stops when ctx ends.
func NewManager(ctx context.Context, s *stats.Store, log *slog.Logger) *Manager {
	m := &Manager{ctx: ctx, stats: s, log: log}
	empty := map[string]*Cluster{}
	m.clusters.Store(&empty)
	context.AfterFunc(ctx, func() {
		for _, c := range *m.clusters.Load() {
			c.stop()
		}
	})
	return m
}

// Get returns the named cluster, or nil.
func (m *Manager) Get(name string) *Cluster { return (*m.clusters.Load())[name] }

// Names lists the clusters, sorted.
func (m *Manager) Names() []string {
	cs := *m.clusters.Load()
	out := make([]string, 0, len(cs))
	for n := range cs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Update makes the clusters those of cfgs with the EDS endpoints eps
// (by EDS name): new clusters are created, changed ones keep their hosts'
// outlier state when only endpoints change, removed ones are stopped.
func (m *Manager) Update(cfgs map[string]*xdsconfig.Cluster, eps map[string]*xdsconfig.Endpoints, secrets map[string]*xdsconfig.Secret) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.clusters.Load()
	next := make(map[string]*Cluster, len(cfgs))
	for name, cfg := range cfgs {
		c := old[name]
		if c == nil || !sameTransport(c, cfg, secrets) {
			if c != nil {
				defer c.stop()
			}
			c = newCluster(cfg, m.stats, secrets)
		} else {
			prev := c.Config()
			c.cfg.Store(cfg)
			if !sameHealth(prev, cfg) || !sameDNS(prev, cfg) {
				c.stop()
			}
		}
		switch cfg.Kind {
		case xdsconfig.ClusterEDS:
			if e := eps[cfg.EDSName]; e != nil {
				c.setHosts(e.Hosts)
			} else {
				c.setHosts(nil)
			}
		case xdsconfig.ClusterStatic:
			c.setHosts(cfg.Endpoints)
		case xdsconfig.ClusterStrictDNS:
			m.startDNS(c)
		}
		m.startHealthChecks(c)
		next[name] = c
	}
	for name, c := range old {
		if next[name] == nil {
			defer c.stop()
		}
	}
	m.clusters.Store(&next)
}

func sameTransport(c *Cluster, b *xdsconfig.Cluster, secrets map[string]*xdsconfig.Secret) bool {
	a := c.Config()
	if a.HTTP2 != b.HTTP2 || a.ConnectTimeout != b.ConnectTimeout || a.Limits.MaxConnections != b.Limits.MaxConnections {
		return false
	}
	if a.TLS == nil || b.TLS == nil {
		return a.TLS == b.TLS
	}
	return a.TLS.CertSecret == b.TLS.CertSecret && a.TLS.CASecret == b.TLS.CASecret &&
		slices.Equal(a.TLS.URISANs, b.TLS.URISANs) && c.secrets == secretsOf(b.TLS, secrets)
}

func sameHealth(a, b *xdsconfig.Cluster) bool {
	if a.HealthCheck == nil || b.HealthCheck == nil {
		return a.HealthCheck == b.HealthCheck
	}
	return *a.HealthCheck == *b.HealthCheck
}

func sameDNS(a, b *xdsconfig.Cluster) bool {
	if a.Kind != b.Kind || a.IPv4First != b.IPv4First || a.IPv4Only != b.IPv4Only || len(a.Endpoints) != len(b.Endpoints) {
		return false
	}
	for i := range a.Endpoints {
		if a.Endpoints[i] != b.Endpoints[i] {
			return false
		}
	}
	return true
}

// startDNS resolves a STRICT_DNS cluster's names now and every dnsRefresh:
// each address of each name is a host, as Envoy's strict DNS does.
func (m *Manager) startDNS(c *Cluster) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopDNS != nil {
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	c.stopDNS = cancel
	go func() {
		t := time.NewTicker(dnsRefresh)
		defer t.Stop()
		for {
			m.resolve(ctx, c)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (m *Manager) resolve(ctx context.Context, c *Cluster) {
	cfg := c.Config()
	var eps []xdsconfig.Endpoint
	for _, e := range cfg.Endpoints {
		ips, err := net.DefaultResolver.LookupIPAddr(ctx, e.Host)
		if err != nil && ctx.Err() != nil {
			return // shutting down
		}
		if err != nil {
			m.log.Warn("dns resolution failed; keeping hosts", "cluster", c.Name, "name", e.Host, "err", err)
			return
		}
		var v4, v6 []xdsconfig.Endpoint
		for _, ip := range ips {
			ep := xdsconfig.Endpoint{Host: ip.IP.String(), Port: e.Port, Weight: e.Weight}
			if ip.IP.To4() != nil {
				v4 = append(v4, ep)
			} else {
				v6 = append(v6, ep)
			}
		}
		switch {
		case cfg.IPv4Only:
			eps = append(eps, v4...)
		case cfg.IPv4First && len(v4) > 0:
			eps = append(eps, v4...)
		default:
			eps = append(append(eps, v4...), v6...)
		}
	}
	c.setHosts(eps)
}
