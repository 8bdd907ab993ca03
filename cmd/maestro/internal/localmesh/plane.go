package localmesh

import (
	"context"
	"errors"
	"fmt"

	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// plane runs the mesh's control plane and restarts it on request.
type plane struct {
	cfg     Config
	paths   []string
	loop    *closedloop.Loop        // rollouts and adaptive weights (loop.go); nil without any
	ready   chan controlplane.Addrs // the first start's addresses
	restart chan chan<- error       // a restart request and where to say it serves again
}

// run serves the control plane until ctx ends, restarting it whenever asked;
// a restart binds the addresses of the first start, which the nodes dial.
func (p *plane) run(ctx context.Context) error {
	xdsAddr, adminAddr := p.cfg.XDSAddr, p.cfg.AdminAddr
	onReady := func(a controlplane.Addrs) {
		xdsAddr, adminAddr = a.XDS.String(), a.Admin.String()
		p.ready <- a
	}
	for {
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.once(runCtx, xdsAddr, adminAddr, onReady) }()
		select {
		case err := <-done:
			stop()
			return err
		case served := <-p.restart:
			stop()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				served <- err
				return err
			}
			onReady = func(controlplane.Addrs) { served <- nil }
		}
	}
}

// restartAndWait asks run for a restart and waits until the control plane
// serves again.
func (p *plane) restartAndWait(ctx context.Context) error {
	served := make(chan error, 1)
	select {
	case p.restart <- served:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// once runs the control plane until ctx ends: the same certificates as
// `maestro controlplane` (the policy's spec.ca), served on loopback in
// plaintext.
func (p *plane) once(ctx context.Context, xdsAddr, adminAddr string, ready func(controlplane.Addrs)) error {
	cfg := p.cfg
	reg := telemetry.NewRegistry()
	certCfg := controlplane.CertConfig{Logger: cfg.Logger, Registerer: reg, Plaintext: true}
	err := controlplane.WithCertificates(ctx, p.paths, certCfg, func(ctx context.Context, c *controlplane.Certificates) error {
		return controlplane.Run(ctx, controlplane.Config{
			Paths:     p.paths,
			Load:      c.Loader(),
			Certs:     c,
			Loop:      p.loop,
			XDSAddr:   xdsAddr,
			AdminAddr: adminAddr,
			// Loopback only, for a local demo; the control plane logs
			// that it serves plaintext.
			Insecure:        true,
			InsecureSecrets: true,
			Logger:          cfg.Logger,
			Registry:        reg,
			Tracer:          tracerProvider(cfg.Tracing),
			Ready:           ready,
			OnReload: func(version string, err error) {
				if err != nil {
					// The control plane has logged each problem once, with
					// its file:line:col; repeating them here would print
					// every one twice on the same terminal.
					fmt.Fprintf(cfg.Out, "policy change rejected (problems logged above): still serving version %s\n", version)
				} else {
					fmt.Fprintf(cfg.Out, "policy reloaded: version %s\n", version)
				}
				if cfg.OnReload != nil {
					cfg.OnReload(version, err)
				}
			},
		})
	})
	return busyPort(err, xdsAddr+" or "+adminAddr, "the control plane")
}
