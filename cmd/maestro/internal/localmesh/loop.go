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
// the policy does not), with rollout state in Dir/state so a restarted
// `maestro up` resumes its rollouts. A version is judged on the inference
// series its modelVersion label names, the label that picks what its
// server serves.
func closedLoop(cfg Config, servers []*running) (*closedloop.Loop, error) {
	dir := filepath.Join(cfg.Dir, "state")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("rollout state: %w", err)
	}
	targets := make([]metricsource.Target, 0, len(servers))
	for _, s := range servers {
		targets = append(targets, metricsource.Target{Name: s.Name(), URL: "http://" + s.httpAddr + "/metrics"})
	}
	return closedloop.New(closedloop.Config{
		StateDir: dir, Identity: "maestro-up", Targets: targets, Signals: closedloop.SignalsInference, Logger: cfg.Logger,
	})
}
