// Package builtin wires every runtime Maestro ships into one registry, so
// the CLI and tests add them with a single call.
package builtin

import (
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/runtime/embedding"
	"github.com/maestro-ml/maestro/inference/runtime/linear"
	"github.com/maestro-ml/maestro/inference/runtime/xgboost"
)

// Registry returns a new registry with the xgboost, linear and embedding
// loaders under the names config.yaml's runtime field uses.
func Registry() runtime.Registry {
	return runtime.Registry{
		"xgboost":   xgboost.Load,
		"linear":    linear.Load,
		"embedding": embedding.Load,
	}
}
