// Package e2etest holds what the end-to-end suites share: a real control
// plane started as `maestro controlplane` starts it (certificates, then
// the server, on loopback with random ports) and stopped at the test's
// end, what a running one says about its rollouts (its /debug/status and
// its audit trail), a built-in gateway started against it with the filters
// built to wasm and the policies that use them, and client traffic
// counted per answering server. The suites under cmd/maestro/internal/e2e
// and the gateway's own tests use it; product code never does
// (internal/archtest).
package e2etest

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// StartLimit bounds a control plane's start when Config.Limit is zero.
const StartLimit = 20 * time.Second

// Config says how a test's control plane differs from the default one.
type Config struct {
	// Path is the policy file it serves and watches.
	Path string
	// Certs opens its certificates (controlplane.WithCertificates). Its
	// Registerer, when nil, is the registry the server uses.
	Certs controlplane.CertConfig
	// Server, when set, completes the server's configuration, which comes
	// with Paths, Load, Certs, loopback addresses, Registry and Ready set.
	Server func(*controlplane.Config, *controlplane.Certificates)
	// Limit bounds the start; StartLimit when zero.
	Limit time.Duration
}

// Plane is a running control plane.
type Plane struct {
	Certs *controlplane.Certificates
	Addrs controlplane.Addrs
	stop  func()
}

// Start runs a control plane as cfg says and waits until it serves; it
// fails the test if the plane ends or does not start within the limit. It
// stops at the test's end, or earlier through Stop; an error it ends with
// fails the test.
func Start(t testing.TB, cfg Config) *Plane {
	t.Helper()
	reg := telemetry.NewRegistry()
	if cfg.Certs.Registerer == nil {
		cfg.Certs.Registerer = reg
	}
	type started struct {
		c *controlplane.Certificates
		a controlplane.Addrs
	}
	ready := make(chan started, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- controlplane.WithCertificates(ctx, []string{cfg.Path}, cfg.Certs, func(ctx context.Context, c *controlplane.Certificates) error {
			pc := controlplane.Config{
				Paths: []string{cfg.Path}, Load: c.Loader(), Certs: c,
				XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Registry: reg,
				Ready: func(a controlplane.Addrs) { ready <- started{c, a} },
			}
			if cfg.Server != nil {
				cfg.Server(&pc, c)
			}
			return controlplane.Run(ctx, pc)
		})
	}()
	p := &Plane{}
	stopped := false
	p.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
	}
	t.Cleanup(p.stop)
	limit := cfg.Limit
	if limit == 0 {
		limit = StartLimit
	}
	select {
	case s := <-ready:
		p.Certs, p.Addrs = s.c, s.a
	case err := <-done:
		stopped = true
		t.Fatalf("control plane ended before serving: %v", err)
	case <-time.After(limit):
		t.Fatalf("control plane not serving within %v", limit)
	}
	return p
}

// Stop stops the plane and waits for it to end; later calls do nothing.
func (p *Plane) Stop() { p.stop() }

// Status reads the plane's /debug/status.
func (p *Plane) Status(t testing.TB) closedloop.Status {
	t.Helper()
	res, err := http.Get("http://" + p.Addrs.Admin.String() + "/debug/status")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st closedloop.Status
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// WaitRollout polls the status of a plane driving one rollout until ok
// holds, and returns that status. It fails the test when the rollout ends
// in a phase ok does not accept, or after limit.
func (p *Plane) WaitRollout(t testing.TB, what string, limit time.Duration, ok func(closedloop.Status) bool) closedloop.Status {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		st := p.Status(t)
		if len(st.Rollouts) == 1 && ok(st) {
			return st
		}
		if len(st.Rollouts) == 1 && st.Rollouts[0].Phase != "progressing" {
			t.Fatalf("%s: the rollout ended %s instead: %+v", what, st.Rollouts[0].Phase, st.Rollouts[0])
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; status %+v", what, limit, st)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a bounded wait
	}
}

// Phase is a WaitRollout condition: the only rollout is in phase.
func Phase(phase string) func(closedloop.Status) bool {
	return func(st closedloop.Status) bool { return st.Rollouts[0].Phase == phase }
}
