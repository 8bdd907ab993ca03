package rollout

import (
	"fmt"
	"os"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// Peek returns the view a follower would publish for the policy m from the
// state in dir, without taking the lease or deciding anything: for tools
// (`maestro validate --output --state-dir`) that show the weights a running
// control plane serves without driving its rollouts. Leader is false and
// Holder empty: the lease is not read.
//
// # Errors
//
// dir is not a directory, or its state file cannot be read.
func Peek(dir string, m *policy.Mesh) (*View, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("rollout state directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("rollout state directory %q is not a directory", dir)
	}
	states, err := loadState(dir)
	if err != nil {
		return nil, err
	}
	c := &Controller{}
	c.publish(m, states, false, "")
	return c.View(), nil
}

// Release gives up the lease (when this replica holds it) so another
// replica may drive at once; for callers that tick without Run.
func (c *Controller) Release() error { return c.lease.Release() }
