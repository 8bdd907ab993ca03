package localmesh

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/controlplane/metricsource"
)

// closedLoop drives the policy's rollouts and adaptive ensembles from the
// local servers' own /metrics (this process knows their HTTP ports, which
// the policy does not) and, once they run, the gateways' stats
// (scrapeGateways), with rollout state in Dir/state so a restarted
// `maestro up` resumes its rollouts. A version is judged on the inference
// series its modelVersion label names, the label that picks what its
// server serves.
func closedLoop(cfg Config, servers []*running) (*closedloop.Loop, error) {
	dir := filepath.Join(cfg.Dir, "state")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("rollout state: %w", err)
	}
	return closedloop.New(closedloop.Config{
		StateDir: dir, Identity: "maestro-up", Targets: serverTargets(servers), Signals: closedloop.SignalsInference, Logger: cfg.Logger,
	})
}

// serverTargets are the local servers' /metrics.
func serverTargets(servers []*running) []metricsource.Target {
	targets := make([]metricsource.Target, 0, len(servers))
	for _, s := range servers {
		targets = append(targets, metricsource.Target{Name: s.Name(), URL: "http://" + s.httpAddr + "/metrics"})
	}
	return targets
}

// scrapeGateways adds the running gateways' stats to what the loop
// scrapes: their fanout filters count each ensemble member's answers,
// timeouts and failures, which the adaptive ensembles are weighed on. The
// gateways start after the control plane, so their admin ports are known
// only now.
func scrapeGateways(loop *closedloop.Loop, servers []*running, gateways []*startedGateway) error {
	if len(gateways) == 0 || len(servers) == 0 {
		// Without servers the loop scrapes nothing and has no source: it
		// holds every rollout, with or without the gateways.
		return nil
	}
	targets := serverTargets(servers)
	for _, gw := range gateways {
		targets = append(targets, metricsource.Target{Name: "gateway " + gw.name, URL: "http://" + gw.admin + "/stats/prometheus"})
	}
	return loop.SetTargets(targets)
}
