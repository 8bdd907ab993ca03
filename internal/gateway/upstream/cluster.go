// Package upstream holds the gateway's clusters: their hosts (from EDS, a
// static load assignment or DNS), one HTTP/2 (h2c) or HTTP/1.1 connection
// pool per cluster, round robin over the healthy hosts, consecutive-5xx
// outlier ejection, active health checks and circuit-breaker thresholds,
// with Envoy's per-cluster stats.
package upstream

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maestro-ml/maestro/internal/gateway/h2"
	"github.com/maestro-ml/maestro/internal/gateway/stats"
	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

// panicThreshold is Envoy's healthy_panic_threshold default: below 50%
// healthy hosts the balancer uses all hosts, healthy or not.
const panicThreshold = 50

// maxEjectionTime is Envoy's default cap on an outlier ejection.
const maxEjectionTime = 300 * time.Second

// Host is one upstream endpoint.
type Host struct {
	Addr   string // host:port
	weight uint32

	consecutive5xx atomic.Int32
	ejections      atomic.Int32
	ejectedUntil   atomic.Int64 // unix nanos; 0 when not ejected
	hcFailed       atomic.Bool  // failing active health checks
}

func (h *Host) healthy(now int64) bool { return !h.ejected(now) && !h.hcFailed.Load() }

func (h *Host) ejected(now int64) bool {
	u := h.ejectedUntil.Load()
	return u != 0 && now < u
}

// ClusterStats are one cluster's Envoy stats.
type ClusterStats struct {
	RqTotal, RqTimeout, RqPerTryTimeout, RqRetry, RqRetrySuccess, RqRetryOverflow *stats.Counter
	RqPendingOverflow, CxConnectFail, CxNoneHealthy, EjectionsEnforced            *stats.Counter
	CxOverflow                                                                    *stats.Counter
	RqActive, EjectionsActive, MembershipHealthy, MembershipTotal                 *stats.Gauge
	RqTime                                                                        *stats.Histogram

	store *stats.Store
	name  string
	codes sync.Map // int -> *stats.Counter, upstream_rq_<code>
	class [6]*stats.Counter
}

func newClusterStats(s *stats.Store, name string) *ClusterStats {
	l := stats.L("envoy_cluster_name", name)
	cs := &ClusterStats{
		RqTotal:           s.Counter("envoy_cluster_upstream_rq_total", l...),
		RqTimeout:         s.Counter("envoy_cluster_upstream_rq_timeout", l...),
		RqPerTryTimeout:   s.Counter("envoy_cluster_upstream_rq_per_try_timeout", l...),
		RqRetry:           s.Counter("envoy_cluster_upstream_rq_retry", l...),
		RqRetrySuccess:    s.Counter("envoy_cluster_upstream_rq_retry_success", l...),
		RqRetryOverflow:   s.Counter("envoy_cluster_upstream_rq_retry_overflow", l...),
		RqPendingOverflow: s.Counter("envoy_cluster_upstream_rq_pending_overflow", l...),
		CxConnectFail:     s.Counter("envoy_cluster_upstream_cx_connect_fail", l...),
		CxNoneHealthy:     s.Counter("envoy_cluster_upstream_cx_none_healthy", l...),
		CxOverflow:        s.Counter("envoy_cluster_upstream_cx_overflow", l...),
		EjectionsEnforced: s.Counter("envoy_cluster_outlier_detection_ejections_enforced_total", l...),
		RqActive:          s.Gauge("envoy_cluster_upstream_rq_active", l...),
		EjectionsActive:   s.Gauge("envoy_cluster_outlier_detection_ejections_active", l...),
		MembershipHealthy: s.Gauge("envoy_cluster_membership_healthy", l...),
		MembershipTotal:   s.Gauge("envoy_cluster_membership_total", l...),
		RqTime:            s.Histogram("envoy_cluster_upstream_rq_time", l...),
		store:             s, name: name,
	}
	for c := 1; c <= 5; c++ {
		cs.class[c] = s.Counter("envoy_cluster_upstream_rq_xx", stats.L("envoy_response_code_class", strconv.Itoa(c), "envoy_cluster_name", name)...)
	}
	return cs
}

// Response counts one upstream answer by code, as upstream_rq_<code> and
// upstream_rq_<class>xx, and its time in milliseconds.
func (cs *ClusterStats) Response(code int, elapsed time.Duration) {
	if c := code / 100; c >= 1 && c <= 5 {
		cs.class[c].Inc()
	}
	v, ok := cs.codes.Load(code)
	if !ok {
		v, _ = cs.codes.LoadOrStore(code, cs.store.Counter("envoy_cluster_upstream_rq",
			stats.L("envoy_response_code", strconv.Itoa(code), "envoy_cluster_name", cs.name)...))
	}
	v.(*stats.Counter).Inc()
	cs.RqTime.Record(float64(elapsed.Microseconds()) / 1000)
}

// Cluster is one upstream cluster.
type Cluster struct {
	Name  string
	Stats *ClusterStats

	cfg       atomic.Pointer[xdsconfig.Cluster]
	hosts     atomic.Pointer[[]*Host]
	ring      atomic.Pointer[[]*Host] // hosts repeated by weight
	rr        atomic.Uint64
	active    atomic.Int64
	retries   atomic.Int64
	transport roundTripper
	scheme    string
	secrets   [2]*xdsconfig.Secret // the TLS secrets the transport was built with

	mu      sync.Mutex
	stopHC  context.CancelFunc
	stopDNS context.CancelFunc

	release func() // Acquire's, made once rather than per request
}

// ErrNoHealthyUpstream is returned by Pick when the cluster has no host.
var ErrNoHealthyUpstream = errors.New("no healthy upstream")

// ErrOverflow is a circuit breaker's refusal.
var ErrOverflow = errors.New("overflow")

func newCluster(cfg *xdsconfig.Cluster, s *stats.Store, secrets map[string]*xdsconfig.Secret) *Cluster {
	c := &Cluster{Name: cfg.Name, Stats: newClusterStats(s, cfg.Name)}
	c.release = func() { c.active.Add(-1); c.Stats.RqActive.Add(-1) }
	c.cfg.Store(cfg)
	empty := []*Host{}
	c.hosts.Store(&empty)
	c.ring.Store(&empty)
	c.transport = newTransport(cfg, secrets, c.Stats)
	c.scheme = "http"
	if cfg.TLS != nil {
		c.scheme = "https"
		c.secrets = secretsOf(cfg.TLS, secrets)
	}
	return c
}

// secretsOf picks the secrets a cluster's TLS uses, to notice changes.
func secretsOf(t *xdsconfig.UpstreamTLS, all map[string]*xdsconfig.Secret) [2]*xdsconfig.Secret {
	return [2]*xdsconfig.Secret{all[t.CertSecret], all[t.CASecret]}
}

// Scheme is "https" for a TLS cluster, else "http".
func (c *Cluster) Scheme() string { return c.scheme }

// roundTripper is a cluster's connection pool.
type roundTripper interface {
	http.RoundTripper
	CloseIdleConnections()
}

func newTransport(cfg *xdsconfig.Cluster, secrets map[string]*xdsconfig.Secret, st *ClusterStats) roundTripper {
	d := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	if cfg.HTTP2 && cfg.TLS == nil {
		// h2c: the gateway's own client, which writes a request's
		// frames, and those of concurrent requests, in one system call.
		// max_connections spans the cluster, as in Envoy.
		return &h2.Transport{DialContext: d.DialContext, MaxConns: cfg.Limits.MaxConnections, OnConnOverflow: st.CxOverflow.Inc}
	}
	t := &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     time.Hour, // Envoy keeps upstream connections until the upstream closes them
		MaxConnsPerHost:     cfg.Limits.MaxConnections,
		DisableCompression:  true,
	}
	var p http.Protocols
	switch {
	case cfg.TLS != nil:
		t.TLSClientConfig = tlsConfig(cfg.TLS, secrets)
		if cfg.HTTP2 {
			p.SetHTTP2(true)
		} else {
			p.SetHTTP1(true)
		}
		t.Protocols = &p
	}
	return t
}

// Config returns the cluster's current config.
func (c *Cluster) Config() *xdsconfig.Cluster { return c.cfg.Load() }

// Transport is the cluster's connection pool.
func (c *Cluster) Transport() http.RoundTripper { return c.transport }

// Hosts returns the current hosts.
func (c *Cluster) Hosts() []*Host { return *c.hosts.Load() }

func (c *Cluster) setHosts(eps []xdsconfig.Endpoint) {
	old := make(map[string]*Host)
	for _, h := range c.Hosts() {
		old[h.Addr] = h
	}
	var hosts []*Host
	for _, e := range eps {
		addr := net.JoinHostPort(e.Host, strconv.Itoa(e.Port))
		h := old[addr]
		if h == nil {
			h = &Host{Addr: addr}
			if c.Config().HealthCheck != nil {
				// Envoy counts a new host as failing active health
				// checks until its first check passes.
				h.hcFailed.Store(true)
			}
		}
		h.weight = max(e.Weight, 1)
		hosts = append(hosts, h)
	}
	var ring []*Host
	for _, h := range hosts {
		for range min(h.weight, 100) {
			ring = append(ring, h)
		}
	}
	c.ring.Store(&ring)
	c.hosts.Store(&hosts)
	c.Stats.MembershipTotal.Set(int64(len(hosts)))
	c.countHealthy()
}

// countHealthy refreshes membership_healthy.
func (c *Cluster) countHealthy() {
	now := time.Now().UnixNano()
	n := 0
	for _, h := range c.Hosts() {
		if h.healthy(now) {
			n++
		}
	}
	c.Stats.MembershipHealthy.Set(int64(n))
}

// Acquire reserves a request slot under max_requests; release it with the
// returned function.
func (c *Cluster) Acquire() (func(), error) {
	if n := c.active.Add(1); int(n) > c.Config().Limits.MaxRequests {
		c.active.Add(-1)
		c.Stats.RqPendingOverflow.Inc()
		return nil, ErrOverflow
	}
	c.Stats.RqActive.Add(1)
	return c.release, nil
}

// AcquireRetry reserves a retry under max_retries.
func (c *Cluster) AcquireRetry() (func(), bool) {
	if n := c.retries.Add(1); int(n) > c.Config().Limits.MaxRetries {
		c.retries.Add(-1)
		c.Stats.RqRetryOverflow.Inc()
		return nil, false
	}
	return func() { c.retries.Add(-1) }, true
}

// Pick chooses the next host by round robin (hosts repeated by weight)
// over the healthy hosts, or over all hosts when fewer than half are
// healthy (Envoy's panic mode).
func (c *Cluster) Pick() (*Host, error) {
	hosts := c.Hosts()
	ring := *c.ring.Load()
	if len(hosts) == 0 || len(ring) == 0 {
		c.Stats.CxNoneHealthy.Inc()
		return nil, ErrNoHealthyUpstream
	}
	now := time.Now().UnixNano()
	nHealthy := 0
	for _, h := range hosts {
		if h.healthy(now) {
			nHealthy++
		}
	}
	c.Stats.MembershipHealthy.Set(int64(nHealthy))
	start := int(c.rr.Add(1) - 1)
	if nHealthy*100 < panicThreshold*len(hosts) {
		return ring[start%len(ring)], nil
	}
	for i := range ring {
		if h := ring[(start+i)%len(ring)]; h.healthy(now) {
			return h, nil
		}
	}
	return ring[start%len(ring)], nil
}

// Report feeds one attempt's outcome to outlier detection: code is the
// HTTP status (a gRPC status already mapped to HTTP), or 503 for a
// connection failure, reset or timeout, as Envoy counts them.
func (c *Cluster) Report(h *Host, code int) {
	od := c.Config().Outlier
	if od == nil || h == nil {
		return
	}
	if code < 500 {
		h.consecutive5xx.Store(0)
		return
	}
	if int(h.consecutive5xx.Add(1)) < od.Consecutive5xx {
		return
	}
	h.consecutive5xx.Store(0)
	now := time.Now().UnixNano()
	if h.ejected(now) {
		return
	}
	hosts := c.Hosts()
	ejected := 0
	for _, o := range hosts {
		if o.ejected(now) {
			ejected++
		}
	}
	// Envoy ejects at least one host whatever max_ejection_percent says.
	if ejected > 0 && (ejected+1)*100 > od.MaxEjectionPercent*len(hosts) {
		return
	}
	n := h.ejections.Add(1)
	d := min(time.Duration(n)*od.BaseEjectionTime, max(maxEjectionTime, od.BaseEjectionTime))
	h.ejectedUntil.Store(now + int64(d))
	c.Stats.EjectionsEnforced.Inc()
	c.Stats.EjectionsActive.Set(int64(ejected + 1))
	c.countHealthy()
}

func (c *Cluster) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopHC != nil {
		c.stopHC()
		c.stopHC = nil
	}
	if c.stopDNS != nil {
		c.stopDNS()
		c.stopDNS = nil
	}
	c.transport.CloseIdleConnections()
}
