package localmesh

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/maestro-ml/maestro/controlplane"
	"github.com/maestro-ml/maestro/controlplane/bootstrap"
	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
)

// ProxylessNodeID is the node ID of the gRPC bootstrap `maestro up` writes.
const ProxylessNodeID = "maestro-up-client"

// bootFiles are the bootstrap files written for the mesh.
type bootFiles struct {
	envoy    []string // paths, one per gateway and sidecar
	gateways []envoyBoot
	grpcPath string
	grpc     []byte
}

// envoyBoot is the bootstrap written for one Gateway.
type envoyBoot struct {
	gateway, path, admin string
	port                 uint32 // the Gateway's listener port
}

// writeBootstraps writes an Envoy bootstrap per gateway and sidecar of mesh
// and one gRPC xDS bootstrap for proxyless clients, all pointing at xdsAddr.
// Each Envoy gets its own admin port so that all of them can run at once.
func writeBootstraps(dir string, mesh *policy.Mesh, xdsAddr string, firstAdmin int) (bootFiles, error) {
	var out bootFiles
	admin := firstAdmin
	write := func(name string, c bootstrap.Config) error {
		c.XDSAddr = xdsAddr
		c.AdminAddr = fmt.Sprintf("127.0.0.1:%d", admin)
		admin++
		data, err := bootstrap.EnvoyYAML(c)
		if err != nil {
			return fmt.Errorf("bootstrap %s: %w", name, err)
		}
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
		out.envoy = append(out.envoy, path)
		return nil
	}
	for _, g := range mesh.Gateways {
		id := model.GatewayGroupName(g.Metadata.Name)
		adminAddr := fmt.Sprintf("127.0.0.1:%d", admin)
		// The service a Gateway's spec.nodes selects, as the built-in
		// gateway announces it.
		if err := write(id, bootstrap.Config{NodeID: id, Role: model.RoleGateway, Service: g.Spec.Nodes.Service}); err != nil {
			return out, err
		}
		out.gateways = append(out.gateways, envoyBoot{gateway: g.Metadata.Name, path: out.envoy[len(out.envoy)-1], admin: adminAddr, port: g.Spec.Port})
	}
	for _, s := range mesh.Sidecars {
		id := model.SidecarGroupName(s.Spec.Service)
		if err := write(id, bootstrap.Config{NodeID: id, Role: model.RoleSidecar, Service: s.Spec.Service}); err != nil {
			return out, err
		}
	}
	data, err := bootstrap.GRPC(bootstrap.Config{NodeID: ProxylessNodeID, Role: model.RoleProxyless, XDSAddr: xdsAddr})
	if err != nil {
		return out, fmt.Errorf("grpc bootstrap: %w", err)
	}
	out.grpc, out.grpcPath = data, filepath.Join(dir, "grpc-bootstrap.json")
	return out, os.WriteFile(out.grpcPath, data, 0o644)
}

// printTable tells the user what runs where and how to use it.
func printTable(w io.Writer, mesh *policy.Mesh, servers []*running, gateways []*startedGateway, addrs controlplane.Addrs, boot bootFiles) {
	fmt.Fprintf(w, "Maestro mesh %q is up.\n\n", mesh.Config.Metadata.Name)
	fmt.Fprintf(w, "control plane   xDS %s   admin http://%s (/metrics)\n\n", addrs.XDS, addrs.Admin)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tVERSION\tgRPC\tHTTP\tMODELS")
	for _, s := range servers {
		models := "all"
		if s.Model != "" {
			models = s.Model
			if s.ModelVersion != "" {
				models += " v" + s.ModelVersion
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Service, s.Version, s.grpcAddr, s.httpAddr, models)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "ROUTE\tMODEL\tPROXYLESS TARGET\tTRAFFIC")
	for _, r := range mesh.Routes {
		fmt.Fprintf(tw, "%s\t%s\txds:///%s\t%s\n", r.Metadata.Name, r.Spec.Match.Model, r.Spec.Target, routeSummary(r))
	}
	if len(gateways) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "GATEWAY\tLISTENER\tADMIN\tROUTES")
		for _, gw := range gateways {
			var routes []string
			if pg := mesh.Gateway(gw.name); pg != nil {
				routes = pg.Spec.Routes
			}
			fmt.Fprintf(tw, "%s\t%s\thttp://%s/stats/prometheus\t%s\n", gw.name, gw.listener, gw.admin, strings.Join(routes, ", "))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, gw := range gateways {
		if model, rest := predictExample(mesh, gw.name); model != "" {
			flag := ""
			if rest {
				flag = " --http"
			}
			fmt.Fprintf(w, "Predict:        ./maestro predict%s --addr %s %s --input <name>=<v1,v2,...>   (through gateway %s)\n", flag, gw.listener, model, gw.name)
		}
	}
	for _, p := range boot.envoy {
		fmt.Fprintf(w, "Envoy:          envoy -c %s\n", p)
	}
	fmt.Fprintf(w, "Proxyless gRPC: GRPC_XDS_BOOTSTRAP=%s, then dial xds:///<target>\n", boot.grpcPath)
	for _, s := range servers {
		if s.Model != "" {
			fmt.Fprintf(w, "Predict:        maestro predict --addr %s %s --input <name>=<v1,v2,...>\n", s.grpcAddr, s.Model)
			break
		}
	}
	fmt.Fprintln(w, "Edit the policy to move traffic; Ctrl-C stops everything.")
	fmt.Fprintln(w)
}

// live prints the requests each service version has served and one line
// per route of what the gateways' filters did and of the control plane's
// rollouts and adaptive weights (read from its admin address, admin),
// every interval, whenever they change.
func live(ctx context.Context, cfg Config, servers []*running, gateways []*startedGateway, seen *answers, admin string) error {
	lv := &loopView{admin: admin, logger: cfg.Logger}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	var last string
	var prev Counts
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		counts := Counts{}
		for _, s := range servers {
			n, err := requestsServed(s)
			if err != nil {
				return err
			}
			if counts[s.Service] == nil {
				counts[s.Service] = map[string]uint64{}
			}
			counts[s.Service][s.Version] += n
		}
		if cfg.OnCounts != nil {
			cfg.OnCounts(counts)
		}
		line := countsLine(counts, prev)
		st := RouteStats{}
		seen.fill(st)
		for _, gw := range gateways {
			if err := scrapeGateway(ctx, gw.admin, st); err != nil {
				// A slow scrape on a loaded machine is no reason to stop
				// the mesh; the next tick tries again.
				cfg.Logger.Warn("read gateway stats", "gateway", gw.name, "error", err)
			}
		}
		lv.fill(ctx, st)
		if cfg.OnRoutes != nil {
			cfg.OnRoutes(st)
		}
		if rl := routeLines(st); len(rl) > 0 {
			line += "\nroutes\n" + strings.Join(rl, "\n")
		}
		if line != last {
			fmt.Fprintln(cfg.Out, line)
			last = line
		}
		prev = counts
	}
}

// requestsServed sums maestro_inference_requests_total of one server.
func requestsServed(s *running) (uint64, error) {
	families, err := s.metrics.Gather()
	if err != nil {
		return 0, fmt.Errorf("metrics of %s: %w", s.Name(), err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "maestro_inference_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			n += m.GetCounter().GetValue()
		}
	}
	return uint64(n), nil
}

// countsLine formats counts as "requests  fraud: v1 900 (90.0%) v2 100
// (10.0%) | churn: ...", services and versions sorted. The counts are
// totals; the shares are of the requests since prev, so a policy edit shows
// at once instead of being diluted by history.
func countsLine(c, prev Counts) string {
	var parts []string
	for _, svc := range sortedKeys(c) {
		versions := c[svc]
		recent := map[string]uint64{}
		var total uint64
		for v, n := range versions {
			recent[v] = n - prev[svc][v]
			total += recent[v]
		}
		var vs []string
		for _, v := range sortedKeys(versions) {
			share := 0.0
			if total > 0 {
				share = 100 * float64(recent[v]) / float64(total)
			}
			vs = append(vs, fmt.Sprintf("%s %d (%.1f%%)", v, versions[v], share))
		}
		parts = append(parts, svc+": "+strings.Join(vs, " "))
	}
	return "requests  " + strings.Join(parts, " | ")
}

// predictExample picks the model of a gateway's routes to show in the
// predict hint, an ensemble's when there is one, and whether the route is
// a REST one.
func predictExample(mesh *policy.Mesh, gateway string) (model string, rest bool) {
	g := mesh.Gateway(gateway)
	if g == nil {
		return "", false
	}
	for _, name := range g.Spec.Routes {
		r := mesh.Route(name)
		if r == nil || r.Spec.Match.Model == "" {
			continue
		}
		if model == "" || r.Spec.Ensemble != nil {
			model, rest = r.Spec.Match.Model, r.Spec.Match.Protocol == policy.MatchHTTP
		}
		if r.Spec.Ensemble != nil {
			break
		}
	}
	return model, rest
}
