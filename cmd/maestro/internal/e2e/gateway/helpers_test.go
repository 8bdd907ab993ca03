package gateway_test

import "github.com/maestro-ml/maestro/internal/e2etest"

// waitLimit bounds every wait on a condition.
const waitLimit = e2etest.WaitLimit
