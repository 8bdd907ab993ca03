package localmesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"
)

// EnvoyAuto asks for an envoy binary on PATH, falling back to the
// built-in gateway.
const EnvoyAuto = "auto"

// envoyStopGrace is how long a stopped Envoy may take to exit after
// SIGTERM before it is killed.
const envoyStopGrace = 5 * time.Second

// findEnvoy resolves Config.Envoy to a binary, or "" for the built-in
// gateway.
func findEnvoy(want string) (string, error) {
	switch want {
	case "":
		return "", nil
	case EnvoyAuto:
		p, err := exec.LookPath("envoy")
		if err != nil {
			return "", nil
		}
		return p, nil
	}
	p, err := exec.LookPath(want)
	if err != nil {
		return "", fmt.Errorf("--envoy %s: %w", want, err)
	}
	return p, nil
}

// startEnvoys runs binary once per gateway bootstrap, as
// `envoy -c <bootstrap> --base-id <n>` (distinct base ids, so several
// Envoys share the machine) in the wasm directory, where Envoy resolves
// the policy's relative .wasm paths, and waits until each admin port says
// LIVE. Its listener is the policy's port: Envoy binds what the listener
// says.
func startEnvoys(ctx context.Context, g *errgroup.Group, cfg Config, binary string, boots []envoyBoot) ([]*startedGateway, error) {
	var out []*startedGateway
	for i, b := range boots {
		cmd := exec.CommandContext(ctx, binary, "-c", b.path, "--base-id", strconv.Itoa(i+1), "--log-level", "warn")
		cmd.Dir = cfg.WasmDir
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = envoyStopGrace
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("envoy for gateway %s: %w", b.gateway, err)
		}
		exited := make(chan error, 1)
		g.Go(func() error {
			err := cmd.Wait()
			exited <- err
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("envoy for gateway %s (%s) exited: %v", b.gateway, filepath.Base(b.path), err)
		})
		sg := &startedGateway{name: b.gateway, admin: b.admin, listener: envoyListener(b.port)}
		if err := sg.awaitEnvoy(ctx, exited); err != nil {
			return nil, err
		}
		out = append(out, sg)
	}
	return out, nil
}

// awaitEnvoy waits, bounded, for the Envoy's admin /ready, then takes its
// listener address from the policy's port on loopback.
func (sg *startedGateway) awaitEnvoy(ctx context.Context, exited <-chan error) error {
	limit := time.NewTimer(gatewayStartLimit)
	defer limit.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !sg.live(ctx) {
		select {
		case err := <-exited:
			return fmt.Errorf("envoy for gateway %s exited before it was ready: %w", sg.name, errors.Join(err, errors.New("see its log above")))
		case <-ctx.Done():
			return ctx.Err()
		case <-limit.C:
			return fmt.Errorf("envoy for gateway %s: admin %s not LIVE within %s", sg.name, sg.admin, gatewayStartLimit)
		case <-tick.C:
		}
	}
	return nil
}

// envoyListener is where an Envoy gateway listens: the policy's port, on
// loopback.
func envoyListener(port uint32) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
}
