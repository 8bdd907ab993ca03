package localmesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/internal/gateway"
	"github.com/maestro-ml/maestro/internal/gateway/xdsclient"
)

// gatewayStartLimit bounds the wait for a gateway's first configuration:
// compiling the two filters takes seconds on a loaded machine.
const gatewayStartLimit = 2 * time.Minute

// startedGateway is one running built-in gateway.
type startedGateway struct {
	name     string // the policy's Gateway
	listener string // host:port of its listener
	admin    string // host:port of its admin port (/stats/prometheus)
	gw       *gateway.Gateway
}

// missingFilters lists the policy's local wasm files that are not under
// dir: without them a gateway NACKs its filters and serves nothing.
func missingFilters(mesh *policy.Mesh, dir string) []string {
	var missing []string
	for _, m := range []policy.WasmModule{mesh.Config.Spec.Filters.Fanout, mesh.Config.Spec.Filters.SLO} {
		if m.Remote != nil || m.Path == "" {
			continue
		}
		p := m.Path
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	return missing
}

// startGateways starts a built-in gateway for every Gateway of mesh, as a
// node its spec.nodes selects, listening on loopback,
// and waits until each has its listener: the table printed next names its
// address.
func startGateways(ctx context.Context, g *errgroup.Group, cfg Config, mesh *policy.Mesh, xdsAddr string) ([]*startedGateway, error) {
	var out []*startedGateway
	for _, pg := range mesh.Gateways {
		name := pg.Metadata.Name
		port := int(pg.Spec.Port)
		if p, ok := cfg.GatewayPorts[name]; ok {
			port = p
		}
		// The node the Gateway's spec.nodes selects: its first listed id,
		// else gateway-<name> announcing its service (by default the
		// Gateway's name).
		node, service := model.GatewayGroupName(name), name
		if sel := pg.Spec.Nodes; len(sel.IDs) > 0 {
			node, service = sel.IDs[0], ""
		} else if sel.Service != "" {
			service = sel.Service
		}
		admin := make(chan net.Addr, 1)
		nacks := make(chan error, 1)
		gw, err := gateway.New(ctx, gateway.Config{
			NodeID: node, Service: service,
			XDSAddr: xdsAddr, AdminAddr: "127.0.0.1:0",
			BindHost: "127.0.0.1", BindPort: map[string]int{name: port},
			WasmDir: cfg.WasmDir,
			Logger:  cfg.Logger.With("gateway", name),
			Ready:   func(a net.Addr) { admin <- a },
			OnXDS: func(ev xdsclient.Event) {
				if ev.Err == nil {
					return
				}
				select {
				case nacks <- ev.Err:
				default:
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("gateway %s: %w", name, err)
		}
		g.Go(func() error {
			if err := gw.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("gateway %s: %w", name, err)
			}
			return nil
		})
		sg := &startedGateway{name: name, gw: gw}
		if err := sg.await(ctx, admin, nacks); err != nil {
			return nil, err
		}
		out = append(out, sg)
	}
	return out, nil
}

// await waits for the gateway's admin port and then its listener, bounded,
// failing at once on a configuration it refused.
func (sg *startedGateway) await(ctx context.Context, admin <-chan net.Addr, nacks <-chan error) error {
	limit := time.NewTimer(gatewayStartLimit)
	defer limit.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if sg.admin != "" {
			if a, ok := sg.gw.ListenerAddr(sg.name); ok && sg.live(ctx) {
				sg.listener = a.String()
				return nil
			}
		}
		select {
		case a := <-admin:
			sg.admin = a.String()
		case err := <-nacks:
			return fmt.Errorf("gateway %s refused its configuration: %w", sg.name, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-limit.C:
			return fmt.Errorf("gateway %s: no listener within %s", sg.name, gatewayStartLimit)
		case <-tick.C:
		}
	}
}

// live says whether the gateway's /ready answers LIVE: its listener has
// its routes and filter configs, so requests are not answered by a
// missing filter config.
func (sg *startedGateway) live(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+sg.admin+"/ready", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
