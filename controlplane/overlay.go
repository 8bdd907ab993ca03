package controlplane

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// Overlays change the policy between policy.Load and model.Build: the
// rollouts' splits and the adaptive ensembles' weights (closedloop). The
// loader (Certificates.Loader) is made before any plane and keeps the
// Loader signature, so the overlay of one load travels in its context, as
// policy.WithSkipReport does: the loader calls overlaid on the policy it
// read, which applies the overlay and records the policy, and the plane
// hands that policy to the loop once the load is served.

// loadHook is one load's overlay and the policy its loader read, and
// where the load's adaptive ensembles post their observations (nil: they
// post none).
type loadHook struct {
	apply    func(*policy.Mesh) *policy.Mesh
	policy   *policy.Mesh
	observer *model.Observer
}

type hookKey struct{}

// WithOverlay returns ctx making a Loader apply apply to the policy it
// reads before building the model: for previews of what a running control
// plane serves (`maestro validate --output --state-dir`).
func WithOverlay(ctx context.Context, apply func(*policy.Mesh) *policy.Mesh) context.Context {
	return context.WithValue(ctx, hookKey{}, &loadHook{apply: apply})
}

// overlaid is called by every Loader between policy.Load and model.Build:
// it returns pm with the load's overlay applied (pm itself without one)
// and records pm as the policy the load read.
func overlaid(ctx context.Context, pm *policy.Mesh) *policy.Mesh {
	h, _ := ctx.Value(hookKey{}).(*loadHook)
	if h == nil {
		return pm
	}
	h.policy = pm
	if h.apply == nil {
		return pm
	}
	return h.apply(pm)
}

// observerOf is the observer of the load ctx is for, nil without one.
func observerOf(ctx context.Context) *model.Observer {
	if h, _ := ctx.Value(hookKey{}).(*loadHook); h != nil {
		return h.observer
	}
	return nil
}

// setObserver decides, before the first load, where proxies post
// observations: Config.ObserveAddr, else the admin listener's address
// admin (loopback for an unspecified host). Without a loop nothing takes
// observations, so none are configured.
func (cp *plane) setObserver(admin net.Addr) error {
	if cp.cfg.Loop == nil {
		return nil
	}
	addr, flag := cp.cfg.ObserveAddr, "observe address"
	if addr == "" {
		addr, flag = admin.String(), "admin address"
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flag, addr, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return fmt.Errorf("%s %q: want a port in 1..65535", flag, addr)
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	cp.observer = &model.Observer{Endpoint: model.Endpoint{Address: host, Port: uint32(port)}, Percent: cp.cfg.ObservePercent}
	cp.log.Info("adaptive ensembles post observations", "to", net.JoinHostPort(host, portText), "percent", cp.cfg.ObservePercent)
	return nil
}

// closedState is the plane's side of the closed loop: the policy last
// served, without overlays.
type closedState struct {
	mu     sync.Mutex
	policy *policy.Mesh
}

// hook returns ctx carrying the plane's overlay for one load.
func (cp *plane) hook(ctx context.Context) (context.Context, *loadHook) {
	h := &loadHook{observer: cp.observer}
	if cp.cfg.Loop != nil {
		h.apply = cp.cfg.Loop.Apply
	}
	return context.WithValue(ctx, hookKey{}, h), h
}

// served records the policy of a load that is now served and tells the
// loop, which starts new rollouts at once.
func (cp *plane) served(h *loadHook) {
	if h.policy == nil {
		return
	}
	cp.closed.mu.Lock()
	cp.closed.policy = h.policy
	cp.closed.mu.Unlock()
	if cp.cfg.Loop != nil {
		cp.cfg.Loop.Loaded(h.policy)
	}
}

// closedStatus is the closed loop's part of /debug/status: the routes with
// their policy and effective weights, rollouts and member weights.
func (cp *plane) closedStatus() *closedloop.Status {
	cp.closed.mu.Lock()
	pm := cp.closed.policy
	cp.closed.mu.Unlock()
	if cp.cfg.Loop != nil {
		st := cp.cfg.Loop.Status(pm)
		return &st
	}
	st := closedloop.Describe(pm, nil, nil)
	return &st
}

// followLoop runs the loop and rebuilds the snapshots whenever its
// overlays change, without any file change. A rebuild is a periodic load:
// the files are re-read (unchanged documents are not re-parsed) and a
// policy still invalid in the same way is not reported again.
func (cp *plane) followLoop(ctx context.Context) error {
	l := cp.cfg.Loop
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	for {
		select {
		case <-ctx.Done():
			return <-done
		case err := <-done:
			return err
		case <-l.Changed():
			_, _ = cp.load(ctx, true)
		}
	}
}
