// Package xdsclient subscribes a gateway node to the control plane over ADS
// (state of the world), in Envoy's order: clusters and listeners by
// wildcard, then the endpoints, secrets, route tables and filter configs
// they name.
// Each response is decoded and applied whole: a good one is ACKed, a bad
// one NACKed with the error (naming the resource and field) while the last
// good configuration stays in force. When the stream breaks the client
// keeps that configuration and reconnects with bounded, jittered backoff.
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

// Types are the xDS types a gateway subscribes to, in the order it asks.
var Types = []string{
	resource.ClusterType, resource.EndpointType, resource.SecretType, resource.ListenerType,
	resource.RouteType, resource.ExtensionConfigType,
}

// State is the accepted configuration, by type URL then resource name.
type State map[string]map[string]xdsconfig.Resource

// Clone returns a copy whose maps can be changed.
func (s State) Clone() State {
	out := make(State, len(s))
	for t, m := range s {
		cp := make(map[string]xdsconfig.Resource, len(m))
		for k, v := range m {
			cp[k] = v
		}
		out[t] = cp
	}
	return out
}

// Applier takes a new complete state; an error rejects it (NACK) and the
// previous state stays applied.
type Applier func(ctx context.Context, s State) error

// Reconnect backoff, Envoy's defaults for the ADS stream's retry policy:
// base 500 ms, cap 30 s, fully jittered.
const (
	backoffBase = 500 * time.Millisecond
	backoffMax  = 30 * time.Second
)

// Config configures a client.
type Config struct {
	Conn  grpc.ClientConnInterface // to the control plane
	Node  *corev3.Node
	Apply Applier
	// Logger; slog.Default() when nil.
	Logger *slog.Logger
	// OnEvent, if set, sees every ACK and NACK (for stats and tests).
	OnEvent func(Event)
	// OnConnect, if set, is told when a stream opens (true) or ends.
	OnConnect func(connected bool)
}

// Event is one answer to a response.
type Event struct {
	TypeURL string
	Version string
	Err     error // nil: ACK
}

// Client is an ADS subscription.
type Client struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	state    State
	raw      map[string]map[string]*anypb.Any
	versions map[string]string
}

// New returns a client; Run starts it.
func New(cfg Config) (*Client, error) {
	if cfg.Conn == nil || cfg.Node == nil || cfg.Apply == nil {
		return nil, errors.New("xdsclient: conn, node and apply are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	st := make(State)
	raw := make(map[string]map[string]*anypb.Any)
	for _, t := range Types {
		st[t] = map[string]xdsconfig.Resource{}
		raw[t] = map[string]*anypb.Any{}
	}
	return &Client{cfg: cfg, log: log, state: st, raw: raw, versions: map[string]string{}}, nil
}

// Accepted returns the accepted resources as received, by type, and their
// versions, for /config_dump.
func (c *Client) Accepted() (map[string][]*anypb.Any, map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]*anypb.Any)
	for t, m := range c.raw {
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			out[t] = append(out[t], m[n])
		}
	}
	vs := make(map[string]string, len(c.versions))
	for k, v := range c.versions {
		vs[k] = v
	}
	return out, vs
}

// Run keeps a stream open until ctx ends, reconnecting with backoff.
func (c *Client) Run(ctx context.Context) error {
	attempt := 0
	for {
		start := time.Now()
		err := c.stream(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > backoffMax {
			attempt = 0 // a long-lived stream resets the backoff
		}
		wait := backoff(attempt)
		attempt++
		c.log.Warn("xds stream ended; reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// backoff is full jitter over an exponential bound capped at backoffMax.
func backoff(attempt int) time.Duration {
	bound := backoffBase << min(attempt, 10)
	bound = min(bound, backoffMax)
	return time.Duration(rand.Int64N(int64(bound))) + time.Millisecond
}

type typeState struct {
	names []string // subscribed names; nil for wildcard types
	nonce string
	sent  bool
}

func wildcard(t string) bool {
	return t == resource.ClusterType || t == resource.ListenerType
}

func (c *Client) stream(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(c.cfg.Conn)
	s, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open ads stream: %w", err)
	}
	if c.cfg.OnConnect != nil {
		c.cfg.OnConnect(true)
		defer c.cfg.OnConnect(false)
	}
	types := make(map[string]*typeState)
	first := true
	send := func(t string, errDetail error) error {
		ts := types[t]
		c.mu.Lock()
		req := &discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: c.versions[t], ResponseNonce: ts.nonce, ResourceNames: ts.names}
		c.mu.Unlock()
		if first {
			req.Node, first = c.cfg.Node, false
		}
		if errDetail != nil {
			req.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: errDetail.Error()}
		}
		ts.sent = true
		return s.Send(req)
	}
	// resubscribe sends a request for each dependent type whose wanted
	// names changed (or that was never asked on this stream).
	resubscribe := func() error {
		want := c.wanted()
		for _, t := range Types {
			if wildcard(t) {
				continue
			}
			ts := types[t]
			if ts.sent && slices.Equal(ts.names, want[t]) {
				continue
			}
			if !ts.sent && len(want[t]) == 0 {
				continue
			}
			ts.names = want[t]
			if err := send(t, nil); err != nil {
				return err
			}
		}
		return nil
	}
	for _, t := range Types {
		types[t] = &typeState{}
	}
	for _, t := range []string{resource.ClusterType, resource.ListenerType} {
		if err := send(t, nil); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
	if err := resubscribe(); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		t := resp.GetTypeUrl()
		ts, ok := types[t]
		if !ok {
			c.log.Warn("xds response of an unrequested type", "type", t)
			continue
		}
		ts.nonce = resp.GetNonce()
		applyErr := c.apply(ctx, t, resp)
		ev := Event{TypeURL: t, Version: resp.GetVersionInfo(), Err: applyErr}
		if applyErr != nil {
			c.log.Error("xds config rejected", "type", t, "version", resp.GetVersionInfo(), "err", applyErr)
		}
		if err := send(t, applyErr); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		if c.cfg.OnEvent != nil {
			c.cfg.OnEvent(ev)
		}
		if applyErr == nil {
			if err := resubscribe(); err != nil {
				return fmt.Errorf("subscribe: %w", err)
			}
		}
	}
}

// apply decodes a response and, if every resource is good and the applier
// takes the new state, records it.
func (c *Client) apply(ctx context.Context, t string, resp *discoveryv3.DiscoveryResponse) error {
	decoded := make(map[string]xdsconfig.Resource, len(resp.GetResources()))
	raw := make(map[string]*anypb.Any, len(resp.GetResources()))
	var errs []error
	for _, a := range resp.GetResources() {
		r, err := xdsconfig.Decode(t, a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := decoded[r.Name]; dup {
			errs = append(errs, fmt.Errorf("resource %q sent twice", r.Name))
			continue
		}
		decoded[r.Name] = r
		raw[r.Name] = a
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.mu.Lock()
	next := c.state.Clone()
	c.mu.Unlock()
	next[t] = decoded
	if err := c.cfg.Apply(ctx, next); err != nil {
		return err
	}
	c.mu.Lock()
	c.state = next
	c.raw[t] = raw
	c.versions[t] = resp.GetVersionInfo()
	c.mu.Unlock()
	return nil
}

// wanted returns the names of the dependent resources the accepted
// listeners and clusters refer to, sorted.
func (c *Client) wanted() map[string][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	sets := map[string]map[string]bool{
		resource.EndpointType: {}, resource.SecretType: {}, resource.RouteType: {}, resource.ExtensionConfigType: {},
	}
	for _, r := range c.state[resource.ClusterType] {
		cl := r.Value.(*xdsconfig.Cluster)
		if cl.Kind == xdsconfig.ClusterEDS {
			sets[resource.EndpointType][cl.EDSName] = true
		}
		if t := cl.TLS; t != nil {
			for _, n := range []string{t.CertSecret, t.CASecret} {
				if n != "" {
					sets[resource.SecretType][n] = true
				}
			}
		}
	}
	for _, r := range c.state[resource.ListenerType] {
		l := r.Value.(*xdsconfig.Listener)
		sets[resource.RouteType][l.RouteConfig] = true
		for _, f := range l.Filters {
			if f.Kind == xdsconfig.FilterWasm {
				sets[resource.ExtensionConfigType][f.Name] = true
			}
		}
	}
	out := make(map[string][]string, len(sets))
	for t, s := range sets {
		names := make([]string, 0, len(s))
		for n := range s {
			names = append(names, n)
		}
		slices.Sort(names)
		out[t] = names
	}
	return out
}
